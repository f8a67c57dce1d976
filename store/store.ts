/**
 * @module store/store
 * The container's one LevelDB. Sublevels: `n` node directory, `t` tombstones, `r` refs, `i` indexes,
 * `c` parent→child edges, `e` parent→ephemeral child edges, `x` lifetime state, `l` logs, `d` deadlines,
 * `b` budget holders, `g` pending cleanups, `h` which Ephemeral children a node's state holds.
 * Everything one operation changes goes into one batch, so a crash leaves either all of it or none.
 */
import { Level } from 'level';
import type { AbstractSublevel } from 'abstract-level';
import { decode, encode, KeynodeError, type NodeId, type Write } from '../protocol/index.js';
import { childKey, deadlineKey, indexKey, indexRange, logKey, nodeRange, parseDeadlineKey, refKey } from './keys.js';
import { encodeRecord, type LogLine, type NodeRecord, type Tombstone } from './records.js';

type Sub = AbstractSublevel<Level<string, Uint8Array>, string | Buffer | Uint8Array, string, Uint8Array>;
type Op = { type: 'put'; sublevel: Sub; key: string; value: Uint8Array } | { type: 'del'; sublevel: Sub; key: string };

const EMPTY = new Uint8Array(0);
/** Operations added to a native batch between turns of the event loop. */
const YIELD_EVERY = 4096;
const SUBLEVELS = ['n', 't', 'r', 'i', 'c', 'e', 'x', 'l', 'd', 'b', 'g', 'h'] as const;
type SubName = (typeof SUBLEVELS)[number];

/** An iterator over raw entries (store/backup.ts). */
export interface RawIterator {
  nextv(size: number): Promise<[Uint8Array, Uint8Array][]>;
  close(): Promise<void>;
}

export interface StoreOptions {
  /** fsync every commit: survives power loss, not only `kill -9`. */
  sync?: boolean;
}

/** A set of changes committed atomically with `commit()`. */
export class Txn {
  readonly #store: Store;
  readonly ops: Op[] = [];
  constructor(store: Store) {
    this.#store = store;
  }
  put(sub: SubName, key: string, value: Uint8Array): this {
    this.ops.push({ type: 'put', sublevel: this.#store.sub(sub), key, value });
    return this;
  }
  del(sub: SubName, key: string): this {
    this.ops.push({ type: 'del', sublevel: this.#store.sub(sub), key });
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
  readonly #sync: boolean;

  private constructor(db: Level<string, Uint8Array>, sync: boolean) {
    this.#db = db;
    this.#sync = sync;
    for (const name of SUBLEVELS) this.#subs.set(name, db.sublevel<string, Uint8Array>(name, { valueEncoding: 'view' }) as Sub);
  }

  static async open(path: string, options: StoreOptions = {}): Promise<Store> {
    const db = new Level<string, Uint8Array>(path, { valueEncoding: 'view' });
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

  txn(): Txn {
    return new Txn(this);
  }

  /**
   * A chained batch: measured here, adding each operation to the native batch as it comes costs under half
   * of what `db.batch(array)` does (which copies and re-checks every operation in JavaScript first).
   */
  async batch(ops: Op[]): Promise<void> {
    if (ops.length === 0) return;
    const batch = this.#db.batch();
    try {
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i]!;
        if (op.type === 'put') batch.put(op.key, op.value, { sublevel: op.sublevel as never });
        else batch.del(op.key, { sublevel: op.sublevel as never });
        // A big batch (a spawn of thousands) is built a slice at a time; nothing is written before write().
        if (i % YIELD_EVERY === YIELD_EVERY - 1) await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (e) {
      await batch.close();
      throw e;
    }
    await batch.write({ sync: this.#sync });
  }

  async close(): Promise<void> {
    await this.#db.close();
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
    await Promise.all([this.sub('r').clear(range), this.sub('i').clear(range), this.sub('l').clear(range), this.sub('h').clear(range)]);
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

  /** Empties a node's refs and indexes (Resetting lifetime), and with them the children they held. */
  async resetState(id: NodeId): Promise<void> {
    await Promise.all([this.sub('r').clear(nodeRange(id)), this.sub('i').clear(nodeRange(id)), this.sub('h').clear(nodeRange(id))]);
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
