/**
 * @module store/store
 * The container's one LevelDB. Sublevels: `n` node directory, `t` tombstones, `r` refs, `i` indexes,
 * `c` parent→child edges, `e` parent→ephemeral child edges, `x` lifetime state, `l` logs, `d` deadlines,
 * `b` budget holders, `g` pending cleanups, `h` which Ephemeral children a node's state holds, `s` storage
 * counters, `z` sizes of ref and index entries, `m` forwarding records of nodes that moved away, `p` moves
 * prepared here and not yet activated (container/migration), `o` tombstones that expire, by the time they were
 * written (store/tombstones.ts).
 * Everything one operation changes goes into one batch, so a crash leaves either all of it or none.
 */
import { Level } from 'level';
import type { AbstractSublevel } from 'abstract-level';
import { decode, encode, KeynodeError, type NodeId, type Write } from '../protocol/index.js';
import { childKey, deadlineKey, decodeSize, encodeSize, entryBytes, indexKey, indexRange, logKey, nodeRange, parseDeadlineKey, refKey, sizedEntry, sizeKey, stateEntryBytes, tombstoneKey } from './keys.js';
import { AbsentIds } from './absent.js';
import { Meter, type Charge, type Metering, type Requirement, type StorageAccount } from './meter.js';
import { encodeRecord, type Forward, type LogLine, type NodeRecord, type Tombstone } from './records.js';

type Sub = AbstractSublevel<Level<string, Uint8Array>, string | Buffer | Uint8Array, string, Uint8Array>;
/** `key` without its sublevel's prefix: `Store.#write` adds it, writing the batch on the root database. */
type Op = { type: 'put'; sub: SubName; key: string; value: Uint8Array } | { type: 'del'; sub: SubName; key: string; value?: undefined };

const EMPTY = new Uint8Array(0);
/** Operations added to a native batch between turns of the event loop. */
const YIELD_EVERY = 4096;
const SUBLEVELS = ['n', 't', 'r', 'i', 'c', 'e', 'x', 'l', 'd', 'b', 'g', 'h', 's', 'z', 'm', 'p', 'o'] as const;
export type SubName = (typeof SUBLEVELS)[number];
/** Above every sublevel's prefix (`!n!`...): a range no key is in. */
const NO_KEYS = { from: '\uffff\uffff', to: '\uffff\uffff\uffff' };
/** Entries a reset deletes per batch (each batch with its counters' change). */
const CLEAR_CHUNK = 1024;
/** Log lines a trim deletes per batch (each batch with the bytes it gives back). */
const TRIM_CHUNK = 256;
/** IDs remembered as not here (store/absent.ts): ~100 bytes each. */
const ABSENT_MAX = 10_000;

const gone = (id: NodeId): KeynodeError => new KeynodeError('ERR_NODE_DESTROYED', `node ${id} was destroyed`);

/** An iterator over raw entries (store/backup.ts). */
export interface RawIterator {
  nextv(size: number): Promise<[Uint8Array, Uint8Array][]>;
  close(): Promise<void>;
}

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
  readonly meters: Metering[] = [];
  readonly requires: Requirement[] = [];
  constructor(store: Store) {
    this.#store = store;
  }
  put(sub: SubName, key: string, value: Uint8Array): this {
    this.ops.push({ type: 'put', sub, key, value });
    return this;
  }
  del(sub: SubName, key: string): this {
    this.ops.push({ type: 'del', sub, key });
    return this;
  }
  /**
   * Adds `delta` bytes to storage counters, atomically with the rest, and for each size key of `resized` the
   * difference between the size given and the one stored (read when it commits); refused whole if a counter
   * would pass its ceiling.
   */
  count(counters: Charge[], delta: number, resized?: Map<string, number>): this {
    if ((delta !== 0 || resized?.size) && counters.length) this.meters.push({ kind: 'count', counters, delta, ...(resized ? { resized } : {}) });
    return this;
  }
  /**
   * Charges a node's account (see `count`), and commits only while the node exists: its writes never land
   * after the batch that destroyed it. (Its parent edge tells, a few bytes where its record may be megabytes.)
   */
  charge(account: StorageAccount, delta: number, resized?: Map<string, number>): this {
    return this.count(account.counters, delta, resized).require('c', childKey(account.parent, account.id), () => gone(account.id));
  }
  /** Takes counter `key`'s value off each of `from` and deletes the counters in `remove` (a destroyed node's). */
  uncount(key: string, from: string[], remove: string[]): this {
    this.meters.push({ kind: 'uncount', key, from, remove });
    return this;
  }
  /** Commits only while `sub/key` exists: a node's writes never land after the batch that destroyed it. */
  require(sub: SubName, key: string, error: () => Error): this {
    this.requires.push({ sub, key, error });
    return this;
  }
  /** `encoded`: the record's bytes when the caller has them already (a RecordTemplate). */
  putNode(rec: NodeRecord, encoded?: Uint8Array): this {
    this.put('n', rec.id, encoded ?? encodeRecord(rec));
    return this.put('c', childKey(rec.parent, rec.id), EMPTY);
  }
  /** The eval's writes, already checked by the container, each with its size entry (see keys.sizeKey). */
  writes(id: NodeId, writes: readonly Write[]): this {
    for (const w of writes) {
      const sub = w.op === 'ref' ? 'r' : 'i';
      const key = w.op === 'ref' ? refKey(id, w.name) : indexKey(id, w.name, w.key);
      if (w.op === 'del') this.del(sub, key).del('z', sizeKey(sub, key));
      else this.put(sub, key, w.value).put('z', sizeKey(sub, key), encodeSize(stateEntryBytes(key, w.value.length)));
    }
    return this;
  }
  deadline(at: number, id: NodeId, kind: string, present = true): this {
    return present ? this.put('d', deadlineKey(at, id, kind), EMPTY) : this.del('d', deadlineKey(at, id, kind));
  }
  commit(): Promise<void> {
    return this.meters.length || this.requires.length ? this.#store.meter.commit(this) : this.#store.batch(this.ops);
  }
}

export class Store {
  readonly #db: Level<string, Uint8Array>;
  readonly #subs = new Map<SubName, Sub>();
  readonly #prefixes = new Map<SubName, string>();
  readonly #sync: boolean;
  /** The one writer of batches that change storage counters (see store/meter). */
  readonly meter: Meter<Txn>;
  readonly #absent = new AbsentIds(ABSENT_MAX);

  private constructor(db: Level<string, Uint8Array>, sync: boolean) {
    this.#db = db;
    this.#sync = sync;
    for (const name of SUBLEVELS) {
      const sub = db.sublevel<string, Uint8Array>(name, { valueEncoding: 'view' }) as Sub;
      this.#subs.set(name, sub);
      this.#prefixes.set(name, sub.prefix);
    }
    this.meter = new Meter<Txn>({
      counters: (keys) => this.counters(keys),
      sizes: async (keys) => (await this.getMany('z', keys)).map((v) => (v ? decodeSize(v) : 0)),
      exists: async (sub, keys) => (await this.getMany(sub as SubName, keys)).map((v) => v !== undefined),
      write: (txns, counters) => {
        const ops = txns.flatMap((t) => t.ops);
        for (const [key, v] of counters) ops.push(v === undefined ? { type: 'del', sub: 's', key } : { type: 'put', sub: 's', key, value: Buffer.from(String(v)) });
        return this.batch(ops);
      },
    });
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
    const directory = ops.filter((op) => op.sub === 'n' || op.sub === 't').map((op) => op.key);
    if (!directory.length) return this.#write(ops);
    this.#absent.written(directory);
    try {
      await this.#write(ops);
    } finally {
      this.#absent.written(directory);
    }
  }

  async #write(ops: Op[]): Promise<void> {
    const batch = this.#db.batch();
    try {
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i]!;
        const key = this.#prefixes.get(op.sub)! + op.key;
        if (op.type === 'put') batch.put(key, op.value);
        else batch.del(key);
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

  /**
   * Every key and value of every sublevel, as raw bytes, read from one LevelDB snapshot taken by this call:
   * commits are single batches, so a copy from it holds each commit whole or not at all (store/backup.ts).
   */
  snapshotIterator(highWaterMarkBytes: number): RawIterator {
    return this.#db.iterator({ keyEncoding: 'view', valueEncoding: 'view', highWaterMarkBytes } as never) as unknown as RawIterator;
  }

  async #get(sub: SubName, key: string): Promise<Uint8Array | undefined> {
    return (await this.sub(sub).get(key)) ?? undefined;
  }

  /** Many keys of one sublevel in one read (one trip to LevelDB's thread, not one per key). */
  async getMany(sub: SubName, keys: string[]): Promise<(Uint8Array | undefined)[]> {
    if (keys.length === 0) return [];
    return (await this.sub(sub).getMany(keys)).map((v) => v ?? undefined);
  }

  /** Storage counters (bytes), 0 for one never written. */
  async counters(keys: string[]): Promise<number[]> {
    return (await this.getMany('s', keys)).map((v) => (v ? Number(Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('latin1')) : 0));
  }

  // --- directory -----------------------------------------------------------------------------

  async getNode(id: NodeId): Promise<NodeRecord | undefined> {
    if (this.#absent.has(id)) return undefined;
    const v = await this.#get('n', id);
    return v ? (decode(v) as NodeRecord) : undefined;
  }

  async getTombstone(id: NodeId): Promise<Tombstone | undefined> {
    if (this.#absent.has(id)) return undefined;
    const v = await this.#get('t', id);
    return v ? (decode(v) as Tombstone) : undefined;
  }

  /** True when the node lives here or did (a record or a tombstone); a no is remembered (store/absent.ts). */
  async knows(id: NodeId): Promise<boolean> {
    if (this.#absent.has(id)) return false;
    const epoch = this.#absent.epoch;
    if ((await this.#get('n', id)) || (await this.#get('t', id))) return true;
    this.#absent.add(id, epoch);
    return false;
  }

  /** Where a node that moved away lives now (container/migration). */
  async getForward(id: NodeId): Promise<Forward | undefined> {
    const v = await this.#get('m', id);
    return v ? (decode(v) as Forward) : undefined;
  }

  /**
   * Clears the state ranges of nodes whose records a committed batch removed, as `destroyNode` does after
   * its batch (the same cleanup markers, so a crash in between is finished by `resumeCleanups()`).
   */
  clearNodeData(id: NodeId): Promise<void> {
    return this.#clearNodeData(id);
  }

  async hasChildren(parent: NodeId): Promise<boolean> {
    for await (const _ of this.sub('c').keys({ ...nodeRange(parent), limit: 1 })) return true;
    return false;
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
   * state ranges. If the container dies between the two, `resumeCleanups()` finishes the job. A tombstone
   * that `expires` gets a key by time in `o` (store/tombstones.ts); any other stays.
   */
  async destroyNode(rec: NodeRecord, reason: string, extra?: Txn, expires = false): Promise<void> {
    const t = extra ?? this.txn();
    t.del('n', rec.id).del('c', childKey(rec.parent, rec.id));
    const at = Date.now();
    t.put('t', rec.id, encode({ destroyedAt: at, reason } satisfies Tombstone));
    if (expires) t.put('o', tombstoneKey(at, rec.id), EMPTY);
    t.put('g', rec.id, EMPTY);
    await t.commit();
    await this.#clearNodeData(rec.id);
  }

  async #clearNodeData(id: NodeId): Promise<void> {
    const range = nodeRange(id);
    await Promise.all([this.sub('r').clear(range), this.sub('i').clear(range), this.sub('z').clear(range), this.sub('l').clear(range), this.sub('h').clear(range)]);
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

  // --- tombstones (store/tombstones.ts) ----------------------------------------------------

  /**
   * Removes up to `limit` of the tombstones written before `before`, each with its key in `o`, in one batch;
   * returns how many. A tombstone and its `o` key go together, and an ID cannot be spawned again while its
   * tombstone stands, so an `o` key never names a newer tombstone of the same ID.
   */
  async expireTombstones(before: number, limit: number): Promise<number> {
    const t = this.txn();
    let n = 0;
    for await (const key of this.sub('o').keys({ lt: tombstoneKey(before, ''), limit })) {
      t.del('t', parseDeadlineKey(key).id).del('o', key);
      n++;
    }
    if (n) await t.commit();
    return n;
  }

  // --- refs and indexes ----------------------------------------------------------------------

  getRef(id: NodeId, name: string): Promise<Uint8Array | undefined> {
    return this.#get('r', refKey(id, name));
  }

  getIndex(id: NodeId, name: string, key: string): Promise<Uint8Array | undefined> {
    return this.#get('i', indexKey(id, name, key));
  }

  /** Up to `limit` entries in key order; refused past `maxBytes` of keys and values, read no further. */
  async indexEntries(id: NodeId, name: string, prefix: string, limit: number, maxBytes = Infinity): Promise<[string, Uint8Array][]> {
    const out: [string, Uint8Array][] = [];
    const skip = id.length + name.length + 1;
    let bytes = 0;
    for await (const [k, v] of this.sub('i').iterator({ ...indexRange(id, name, prefix), limit })) {
      bytes += k.length - skip + v.length;
      if (bytes > maxBytes) throw new KeynodeError('ERR_TOO_LARGE', `index ${name}: these entries come to more than ${maxBytes} bytes; ask for fewer (entries({ limit }))`);
      out.push([k.slice(skip), v]);
    }
    return out;
  }

  /**
   * Empties a node's refs and indexes (Resetting lifetime), a slice at a time: each slice's deletes and the
   * bytes they free go in one batch, so the counters stay exact whenever the container dies. Sizes come from
   * the size entries; entries older than those (never charged) are cleared at the end without a count.
   */
  async resetState(account: StorageAccount): Promise<void> {
    const { id } = account;
    for (;;) {
      const t = this.txn();
      let freed = 0;
      for await (const [k, v] of this.sub('z').iterator({ ...nodeRange(id), limit: CLEAR_CHUNK })) {
        const { sub, key } = sizedEntry(k);
        t.del('z', k).del(sub, key);
        freed += decodeSize(v);
      }
      if (!t.ops.length) break;
      await t.charge(account, -freed).commit();
    }
    await Promise.all([this.sub('r').clear(nodeRange(id)), this.sub('i').clear(nodeRange(id))]);
    // And the index of the Ephemeral children that state held: it held none of them now.
    await this.sub('h').clear(nodeRange(id));
  }

  /** True if some state key of `parent` holds `kid` (the `h` index: parent + kid + state key). */
  async holds(parent: NodeId, kid: NodeId): Promise<boolean> {
    for await (const _ of this.sub('h').keys({ ...nodeRange(`${parent}${kid}`), limit: 1 })) return true;
    return false;
  }

  /** Forgets every `h` entry under `prefix` (a parent and a child that ended). */
  clearHolds(prefix: string): Promise<void> {
    return this.sub('h').clear(nodeRange(prefix));
  }

  // --- logs ------------------------------------------------------------------------------------

  /**
   * Appends lines; `keep` bounds how many a node accumulates between trims. Their bytes count against
   * the node's account: with no room, or once the node is gone, nothing is written and this throws.
   */
  async appendLogs(lines: LogLine[], keep: number, account: StorageAccount): Promise<void> {
    const { id } = account;
    const t = this.txn();
    let bytes = 0;
    for (const l of lines.slice(-keep)) {
      const key = logKey(id, l.seq);
      const value = encode(l);
      t.put('l', key, value);
      bytes += entryBytes(key, value.length);
    }
    await t.charge(account, bytes).commit();
  }

  /**
   * Deletes all but the newest `keep` lines of a node, giving their bytes back to its account. Not once the
   * node is gone: its destroy gave back everything it held already.
   */
  async trimLogs(keep: number, account: StorageAccount): Promise<void> {
    const { id } = account;
    // The newest `keep` lines are passed over by key; only the lines to delete are read, for their sizes.
    let n = 0;
    let last: string | undefined;
    for await (const k of this.sub('l').keys({ ...nodeRange(id), reverse: true })) {
      if (++n > keep) {
        last = k;
        break;
      }
    }
    if (last === undefined) return;
    let t = this.txn();
    let freed = 0;
    for await (const [k, v] of this.sub('l').iterator({ gte: id, lte: last })) {
      t.del('l', k);
      freed += entryBytes(k, v.length);
      if (t.ops.length === TRIM_CHUNK) {
        await t.charge(account, -freed).commit();
        t = this.txn();
        freed = 0;
      }
    }
    if (t.ops.length) await t.charge(account, -freed).commit();
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
