/**
 * @module store/store
 * The container's one LevelDB. Sublevels: `n` node directory, `t` tombstones, `r` refs, `i` indexes,
 * `c` parent→child edges, `e` parent→ephemeral child edges, `x` lifetime state, `l` logs, `d` deadlines,
 * `b` budget holders, `g` pending cleanups.
 * Everything one operation changes goes into one batch, so a crash leaves either all of it or none.
 */
import { Level } from 'level';
import type { AbstractSublevel } from 'abstract-level';
import { decode, encode, KeynodeError, type NodeId, type Write } from '../protocol/index.js';
import { childKey, deadlineKey, indexKey, indexRange, logKey, nodeRange, parseDeadlineKey, refKey } from './keys.js';
import { encodeRecord, type LogLine, type NodeRecord, type Tombstone } from './records.js';

type Sub = AbstractSublevel<Level<string, Uint8Array>, string | Buffer | Uint8Array, string, Uint8Array>;
/** `key` carries its sublevel's prefix: a batch is written on the root database (see `Store.batch`). */
type Op = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string; value?: undefined };

const EMPTY = new Uint8Array(0);
/** Operations added to a native batch between turns of the event loop. */
const YIELD_EVERY = 4096;
const SUBLEVELS = ['n', 't', 'r', 'i', 'c', 'e', 'x', 'l', 'd', 'b', 'g'] as const;
/** Above every sublevel's prefix (`!n!`...): a range no key is in. */
const NO_KEYS = { from: '\uffff\uffff', to: '\uffff\uffff\uffff' };
type SubName = (typeof SUBLEVELS)[number];

export interface StoreOptions {
  /** fsync every commit: survives power loss, not only `kill -9`. */
  sync?: boolean;
}

/**
 * LevelDB's memory, bounded whatever the number of nodes. What it holds grows with the data only through
 * the tables it keeps open: each is mapped into memory, with its index and bloom filter (~3% of the table,
 * so ~8 bytes per node) and whatever blocks were read from it resident. LevelDB's default (1,000 open files)
 * would keep every table of ~7 million nodes open; 128 keep 118 tables (~240 MB of data, ~7 MB of index and
 * filter) and cost a read that misses them one open and map of a table file (tens of µs, from the page cache).
 */
const LEVEL_OPTIONS = {
  /** Uncompressed blocks of recently read records (LevelDB's default, said explicitly). */
  cacheSize: 8 * 1024 * 1024,
  /** The memtable; a second one exists while the first is written out. */
  writeBufferSize: 4 * 1024 * 1024,
  maxOpenFiles: 128,
  maxFileSize: 2 * 1024 * 1024,
} as const;

/** A set of changes committed atomically with `commit()`. */
export class Txn {
  readonly #store: Store;
  readonly ops: Op[] = [];
  constructor(store: Store) {
    this.#store = store;
  }
  put(sub: SubName, key: string, value: Uint8Array): this {
    this.ops.push({ type: 'put', key: this.#store.prefix(sub) + key, value });
    return this;
  }
  del(sub: SubName, key: string): this {
    this.ops.push({ type: 'del', key: this.#store.prefix(sub) + key });
    return this;
  }
  /** `encoded`: the record's bytes when the caller has them already (a RecordTemplate). */
  putNode(rec: NodeRecord, encoded?: Uint8Array): this {
    this.put('n', rec.id, encoded ?? encodeRecord(rec));
    return this.put('c', childKey(rec.parent, rec.id), EMPTY);
  }
  /** The eval's writes, already checked by the container. */
  writes(id: NodeId, writes: Write[]): this {
    for (const w of writes) {
      if (w.op === 'ref') this.put('r', refKey(id, w.name), w.value);
      else if (w.op === 'put') this.put('i', indexKey(id, w.name, w.key), w.value);
      else this.del('i', indexKey(id, w.name, w.key));
    }
    return this;
  }
  deadline(at: number, id: NodeId, kind: string, present = true): this {
    return present ? this.put('d', deadlineKey(at, id, kind), EMPTY) : this.del('d', deadlineKey(at, id, kind));
  }
  commit(): Promise<void> {
    return this.#store.batch(this.ops);
  }
}

export class Store {
  readonly #db: Level<string, Uint8Array>;
  readonly #subs = new Map<SubName, Sub>();
  readonly #prefixes = new Map<SubName, string>();
  readonly #sync: boolean;

  private constructor(db: Level<string, Uint8Array>, sync: boolean) {
    this.#db = db;
    this.#sync = sync;
    for (const name of SUBLEVELS) {
      const sub = db.sublevel<string, Uint8Array>(name, { valueEncoding: 'view' }) as Sub;
      this.#subs.set(name, sub);
      this.#prefixes.set(name, sub.prefix);
    }
  }

  static async open(path: string, options: StoreOptions = {}): Promise<Store> {
    const db = new Level<string, Uint8Array>(path, { valueEncoding: 'view', ...LEVEL_OPTIONS });
    try {
      await db.open();
    } catch (cause) {
      const locked = (cause as { cause?: { code?: string } }).cause?.code === 'LEVEL_LOCKED';
      throw new KeynodeError('ERR_UNAVAILABLE', locked ? `the store at ${path} is open in another container (LevelDB lock held)` : `cannot open the store at ${path}: ${(cause as Error).message}`, { cause });
    }
    return new Store(db, options.sync ?? false);
  }

  sub(name: SubName): Sub {
    return this.#subs.get(name)!;
  }

  /** classic-level's own methods, which `level`'s types (shared with the browser build) leave out. */
  get #native(): { compactRange(from: string, to: string): Promise<void>; getProperty(name: string): string } {
    return this.#db as never;
  }

  /** The sublevel's key prefix in the root database (`!n!` for `n`). */
  prefix(name: SubName): string {
    return this.#prefixes.get(name)!;
  }

  txn(): Txn {
    return new Txn(this);
  }

  /**
   * A chained batch: measured here, adding each operation to the native batch as it comes costs under half
   * of what `db.batch(array)` does (which copies and re-checks every operation in JavaScript first).
   * Operations go to the root database with their keys already prefixed: the same bytes on disk as through
   * the sublevel, but abstract-level's `{ sublevel }` option allocates ~1.5 KB of garbage per operation
   * (measured: 1,553 against 246 bytes a put, at twice the time), which while spawning millions of nodes is
   * most of the container's heap.
   */
  async batch(ops: Op[]): Promise<void> {
    if (ops.length === 0) return;
    const batch = this.#db.batch();
    try {
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i]!;
        if (op.type === 'put') batch.put(op.key, op.value);
        else batch.del(op.key);
        // A big batch (a spawn of thousands) is built a slice at a time; nothing is written before write().
        if (i % YIELD_EVERY === YIELD_EVERY - 1) await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (e) {
      await batch.close();
      throw e;
    }
    await batch.write({ sync: this.#sync });
  }

  /**
   * Writes the memtable out first: LevelDB replays its log when it opens, and replaying a full one (up to
   * `writeBufferSize` of recent writes) and writing it out took most of a restart (measured: open ~0.7-1.1 s
   * after a spawn of 10,000 nodes, ~0.1 s after a flush). Compacting a range that holds no key flushes the
   * memtable and compacts nothing else. After a kill -9 the replay is still needed, and bounded the same way.
   */
  async close(): Promise<void> {
    try {
      await this.#native.compactRange(NO_KEYS.from, NO_KEYS.to);
    } finally {
      await this.#db.close();
    }
  }

  /** One of LevelDB's own figures (`leveldb.stats`, `leveldb.approximate-memory-usage`, ...), for diagnostics. */
  property(name: string): string {
    return this.#native.getProperty(name);
  }

  async #get(sub: SubName, key: string): Promise<Uint8Array | undefined> {
    return (await this.sub(sub).get(key)) ?? undefined;
  }

  /** Many keys of one sublevel in one read (one trip to LevelDB's thread, not one per key). */
  async getMany(sub: SubName, keys: string[]): Promise<(Uint8Array | undefined)[]> {
    if (keys.length === 0) return [];
    return (await this.sub(sub).getMany(keys)).map((v) => v ?? undefined);
  }

  // --- directory -----------------------------------------------------------------------------

  async getNode(id: NodeId): Promise<NodeRecord | undefined> {
    const v = await this.#get('n', id);
    return v ? (decode(v) as NodeRecord) : undefined;
  }

  async getTombstone(id: NodeId): Promise<Tombstone | undefined> {
    const v = await this.#get('t', id);
    return v ? (decode(v) as Tombstone) : undefined;
  }

  async *children(parent: NodeId): AsyncGenerator<NodeId> {
    for await (const key of this.sub('c').keys(nodeRange(parent))) yield key.slice(parent.length);
  }

  async listNodes(after: NodeId | undefined, limit: number): Promise<NodeRecord[]> {
    const out: NodeRecord[] = [];
    const range = after ? { gt: after, limit } : { limit };
    for await (const v of this.sub('n').values(range)) out.push(decode(v) as NodeRecord);
    return out;
  }

  /**
   * Forgets a node in one batch (record gone, tombstone and cleanup marker written), then clears its
   * state ranges. If the container dies between the two, `resumeCleanups()` finishes the job.
   */
  async destroyNode(rec: NodeRecord, reason: string, extra?: Txn): Promise<void> {
    const t = extra ?? this.txn();
    t.del('n', rec.id).del('c', childKey(rec.parent, rec.id));
    t.put('t', rec.id, encode({ destroyedAt: Date.now(), reason } satisfies Tombstone));
    t.put('g', rec.id, EMPTY);
    await t.commit();
    await this.#clearNodeData(rec.id);
  }

  async #clearNodeData(id: NodeId): Promise<void> {
    const range = nodeRange(id);
    await Promise.all([this.sub('r').clear(range), this.sub('i').clear(range), this.sub('l').clear(range)]);
    await this.sub('g').del(id);
  }

  /** Node IDs whose state clearing was interrupted; cheap because the set is normally empty. */
  async resumeCleanups(): Promise<number> {
    let n = 0;
    for await (const id of this.sub('g').keys()) {
      await this.#clearNodeData(id);
      n++;
    }
    return n;
  }

  // --- refs and indexes ----------------------------------------------------------------------

  getRef(id: NodeId, name: string): Promise<Uint8Array | undefined> {
    return this.#get('r', refKey(id, name));
  }

  getIndex(id: NodeId, name: string, key: string): Promise<Uint8Array | undefined> {
    return this.#get('i', indexKey(id, name, key));
  }

  async indexEntries(id: NodeId, name: string, prefix: string, limit: number): Promise<[string, Uint8Array][]> {
    const out: [string, Uint8Array][] = [];
    const skip = id.length + name.length + 1;
    for await (const [k, v] of this.sub('i').iterator({ ...indexRange(id, name, prefix), limit })) out.push([k.slice(skip), v]);
    return out;
  }

  /** Every persistent value of a node (refs and index values), for finding IDs it keeps. */
  async *stateValues(id: NodeId): AsyncGenerator<Uint8Array> {
    for await (const v of this.sub('r').values(nodeRange(id))) yield v;
    for await (const v of this.sub('i').values(nodeRange(id))) yield v;
  }

  /** Empties a node's refs and indexes (Resetting lifetime). */
  async resetState(id: NodeId): Promise<void> {
    await Promise.all([this.sub('r').clear(nodeRange(id)), this.sub('i').clear(nodeRange(id))]);
  }

  // --- logs ------------------------------------------------------------------------------------

  /** Appends lines; `keep` bounds how many a node accumulates between trims. */
  async appendLogs(id: NodeId, lines: LogLine[], keep: number): Promise<void> {
    const t = this.txn();
    for (const l of lines.slice(-keep)) t.put('l', logKey(id, l.seq), encode(l));
    await t.commit();
  }

  /** Deletes all but the newest `keep` lines of a node. */
  async trimLogs(id: NodeId, keep: number): Promise<void> {
    let n = 0;
    for await (const k of this.sub('l').keys({ ...nodeRange(id), reverse: true })) {
      if (++n > keep) {
        await this.sub('l').clear({ gte: id, lte: k });
        return;
      }
    }
  }

  async readLogs(id: NodeId, after: number, limit: number): Promise<LogLine[]> {
    const out: LogLine[] = [];
    for await (const v of this.sub('l').values({ gt: logKey(id, after), lt: nodeRange(id).lt, limit })) out.push(decode(v) as LogLine);
    return out;
  }

  // --- deadlines (lifetimes) -----------------------------------------------------------------

  /** Due deadlines, earliest first. The scheduler reads only these, never a node per timer. */
  async dueDeadlines(now: number, limit: number): Promise<{ at: number; id: NodeId; kind: string }[]> {
    const out: { at: number; id: NodeId; kind: string }[] = [];
    for await (const k of this.sub('d').keys({ lt: deadlineKey(now + 1, '', ''), limit })) out.push(parseDeadlineKey(k));
    return out;
  }

  async nextDeadline(): Promise<number | undefined> {
    for await (const k of this.sub('d').keys({ limit: 1 })) return parseDeadlineKey(k).at;
    return undefined;
  }
}
