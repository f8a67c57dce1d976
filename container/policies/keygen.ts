/**
 * @module container/keygen
 * The key mint: node keys are made, named and sealed, and capability grants checked or signed in bulk, on a
 * small pool of worker threads (one per core), so a batch of 10,000 uses every core and the event loop stays
 * free for everyone else's requests. Making an Ed25519 key costs ~35 µs of CPU here, sealing it ~6 µs more,
 * checking a grant ~80 µs: on the event loop, a batch of 10,000 would stall the container for half a second
 * per key or grant.
 *
 * - Work is cut into chunks and served round-robin across holders (the principal or node whose budget pays),
 *   so one holder's big batch delays another's small one by at most a chunk per thread.
 * - The queue is bounded in items (keys, grants); past it a request is refused with ERR_OVERLOADED rather
 *   than queued.
 * - A small stock of ready keys serves single spawns without a round trip to a thread. It is refilled only
 *   after keys are taken, so an idle container makes none; the threads end after a quiet spell and start
 *   again on demand.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { KeynodeError, type NodeId } from '../../protocol/index.js';
import { SEALED_BYTES } from '../seal.js';
import type { GrantCall, KeygenReply, KeygenRequest, KeygenWork } from './keygen-thread.js';

export type { GrantCall } from './keygen-thread.js';

export interface MintedKey {
  id: NodeId;
  /** The node's private key (RFC 8032 seed). */
  seed: Uint8Array;
  /** The seed sealed under the master key for this ID (container/seal.ts). */
  sealed: Uint8Array;
}

export interface KeyMintOptions {
  /** Worker threads (default: the machine's cores, at most 4). */
  threads: number;
  /** Keys kept ready for small spawns. */
  stock: number;
  /** Items (keys, grants) per message to a thread: the unit of fairness between holders. */
  chunk: number;
  /** Items waiting or being worked on, across all holders, before new requests are refused. */
  maxQueued: number;
  /** Threads with nothing to do end after this long. */
  idleMs: number;
}

// One thread per core, up to 4: four make ~100,000 keys/s, more than the event loop can store (~30 µs a
// node), and each thread holds ~12 MB while it lives.
const DEFAULTS: KeyMintOptions = { threads: Math.min(4, availableParallelism()), stock: 512, chunk: 256, maxQueued: 100_000, idleMs: 10_000 };
const THREAD = new URL('./keygen-thread.js', import.meta.url);

interface Job {
  /** One result per item, filled in by chunks as they come back. */
  out: unknown[];
  left: number;
  failed: boolean;
  resolve(out: unknown[]): void;
  reject(e: unknown): void;
}

interface Chunk {
  /** Undefined for a stock refill. */
  job: Job | undefined;
  start: number;
  count: number;
  work: KeygenWork;
}

interface Slot {
  worker: Worker;
  chunk: Chunk | undefined;
  /** Set when we end the thread, so its exit is not taken for a crash. */
  ending: boolean;
}

/** A chunk's reply as one result per item. */
function results(reply: KeygenReply, count: number): unknown[] {
  const out: unknown[] = new Array(count);
  if ('ids' in reply) {
    for (let i = 0; i < count; i++) {
      out[i] = { id: reply.ids[i]!, seed: reply.seeds.slice(32 * i, 32 * i + 32), sealed: reply.sealed.subarray(SEALED_BYTES * i, SEALED_BYTES * (i + 1)) } satisfies MintedKey;
    }
  } else if ('ok' in reply) {
    for (let i = 0; i < count; i++) out[i] = reply.ok[i] === 1;
  } else if ('sigs' in reply) {
    for (let i = 0; i < count; i++) out[i] = reply.sigs.slice(64 * i, 64 * i + 64);
  }
  return out;
}

export class KeyMint {
  readonly #master: Uint8Array;
  readonly #o: KeyMintOptions;
  readonly #slots: Slot[] = [];
  /** Chunks waiting, per holder; a holder served moves to the back (Map order is insertion order). */
  readonly #queues = new Map<string, Chunk[]>();
  readonly #stock: MintedKey[] = [];
  #queued = 0;
  #generated = 0;
  #toppingUp = false;
  #idle: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(master: Uint8Array, options: Partial<KeyMintOptions> = {}) {
    this.#master = master;
    this.#o = { ...DEFAULTS, ...options };
  }

  /** Keys made so far, stock refills included (tests prove refused spawns make none). */
  get generated(): number {
    return this.#generated;
  }

  /** Threads running now. */
  get threads(): number {
    return this.#slots.length;
  }

  /** `count` new keys, paid by `holder` (the unit of fairness). */
  mint(holder: string, count: number): Promise<MintedKey[]> {
    if (count <= this.#stock.length) {
      const keys = this.#stock.splice(this.#stock.length - count, count);
      this.#pump();
      return Promise.resolve(keys);
    }
    return this.#submit(holder, count, (_, n) => ({ op: 'keys', count: n })) as Promise<MintedKey[]>;
  }

  /** IDs and sealed keys for client-chosen seeds (32 bytes each, already checked), in order. */
  derive(holder: string, seeds: Uint8Array[]): Promise<MintedKey[]> {
    const packed = new Uint8Array(32 * seeds.length);
    seeds.forEach((s, i) => packed.set(s, 32 * i));
    return this.#submit(holder, seeds.length, (start, n) => ({ op: 'keys', count: n, seeds: packed.slice(32 * start, 32 * (start + n)) })) as Promise<MintedKey[]>;
  }

  /** Whether each grant (64 bytes, already checked) is the target's signature of `call` for its holder. */
  verifyGrants(holder: string, call: GrantCall, holders: NodeId[], grants: Uint8Array[]): Promise<boolean[]> {
    const sigs = new Uint8Array(64 * grants.length);
    grants.forEach((g, i) => sigs.set(g, 64 * i));
    return this.#submit(holder, holders.length, (start, n) => ({ op: 'verify', call, holders: holders.slice(start, start + n), sigs: sigs.slice(64 * start, 64 * (start + n)) })) as Promise<boolean[]>;
  }

  /** The target's grants of `call` to each holder, signed with the target's seed. */
  signGrants(holder: string, call: GrantCall, seed: Uint8Array, holders: NodeId[]): Promise<Uint8Array[]> {
    return this.#submit(holder, holders.length, (start, n) => ({ op: 'sign', call, seed, holders: holders.slice(start, start + n) })) as Promise<Uint8Array[]>;
  }

  /** Ends every thread; requests waiting or running fail with ERR_UNAVAILABLE. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#idle);
    const stopping = new KeynodeError('ERR_UNAVAILABLE', 'the container is stopping');
    for (const q of this.#queues.values()) for (const c of q) c.job?.reject(stopping);
    this.#queues.clear();
    this.#stock.length = 0;
    await Promise.all(this.#slots.splice(0).map((s) => this.#end(s, stopping)));
    this.#queued = 0;
  }

  #submit(holder: string, count: number, work: (start: number, count: number) => KeygenWork): Promise<unknown[]> {
    if (this.#closed) return Promise.reject(new KeynodeError('ERR_UNAVAILABLE', 'the container is stopping'));
    if (count === 0) return Promise.resolve([]);
    if (this.#queued + count > this.#o.maxQueued) {
      return Promise.reject(new KeynodeError('ERR_OVERLOADED', `the container has ${this.#queued} node keys and grants in hand already; retry shortly`));
    }
    return new Promise<unknown[]>((resolve, reject) => {
      const job: Job = { out: new Array(count), left: count, failed: false, resolve, reject };
      let q = this.#queues.get(holder);
      if (!q) this.#queues.set(holder, (q = []));
      for (let start = 0; start < count; start += this.#o.chunk) {
        const n = Math.min(this.#o.chunk, count - start);
        q.push({ job, start, count: n, work: work(start, n) });
      }
      this.#queued += count;
      this.#pump();
    });
  }

  /** Keys the stock should be topped up with now: once drawn below half, back to full, a chunk at a time. */
  #refill(): number {
    if (this.#stock.length < this.#o.stock / 2) this.#toppingUp = true;
    if (this.#stock.length >= this.#o.stock) this.#toppingUp = false;
    if (!this.#toppingUp || this.#slots.some((s) => s.chunk && !s.chunk.job)) return 0;
    return Math.min(this.#o.chunk, this.#o.stock - this.#stock.length);
  }

  #next(): Chunk | undefined {
    for (const [holder, q] of this.#queues) {
      const c = q.shift()!;
      this.#queues.delete(holder);
      if (q.length) this.#queues.set(holder, q);
      return c;
    }
    const refill = this.#refill();
    return refill ? { job: undefined, start: 0, count: refill, work: { op: 'keys', count: refill } } : undefined;
  }

  #pump(): void {
    if (this.#closed) return;
    while (this.#queues.size || this.#refill()) {
      const slot = this.#slots.find((s) => !s.chunk) ?? (this.#slots.length < this.#o.threads ? this.#start() : undefined);
      if (!slot) break;
      const chunk = this.#next()!;
      slot.chunk = chunk;
      slot.worker.postMessage({ ...chunk.work, job: chunk.start } satisfies KeygenRequest);
    }
    clearTimeout(this.#idle);
    this.#idle = undefined;
    if (this.#slots.length && this.#slots.every((s) => !s.chunk)) {
      this.#idle = setTimeout(() => {
        for (const s of this.#slots.splice(0)) void this.#end(s);
      }, this.#o.idleMs).unref();
    }
  }

  #start(): Slot {
    // A chunk's garbage is a few hundred small objects: a 2 MB young generation makes keys as fast as 8 MB did
    // and keeps each thread at ~12 MB resident instead of ~18 (measured, two threads minting 100,000 keys).
    const worker = new Worker(THREAD, { workerData: { master: this.#master }, resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 2 }, stdout: false, stderr: false });
    worker.unref();
    const slot: Slot = { worker, chunk: undefined, ending: false };
    worker.on('message', (reply: KeygenReply) => this.#done(slot, reply));
    const lost = (why: string) => {
      if (slot.ending) return;
      slot.ending = true;
      const i = this.#slots.indexOf(slot);
      if (i >= 0) this.#slots.splice(i, 1);
      this.#fail(slot.chunk, new KeynodeError('ERR_INTERNAL', `a key-making thread ${why}`));
      slot.chunk = undefined;
      this.#pump();
    };
    worker.on('error', (e) => lost(`failed: ${e.message}`));
    worker.on('exit', (code) => lost(`exited (code ${code})`));
    this.#slots.push(slot);
    return slot;
  }

  async #end(slot: Slot, why?: KeynodeError): Promise<void> {
    slot.ending = true;
    if (why) this.#fail(slot.chunk, why);
    slot.chunk = undefined;
    await slot.worker.terminate();
  }

  /**
   * Fails the chunk's job, and drops the rest of that job still waiting: it is useless now. Its chunks still
   * running elsewhere are counted off as they come back.
   */
  #fail(chunk: Chunk | undefined, e: unknown): void {
    const job = chunk?.job;
    if (!job) return;
    this.#queued -= chunk.count;
    if (job.failed) return;
    job.failed = true;
    job.reject(e);
    for (const [holder, q] of this.#queues) {
      const keep = q.filter((c) => c.job !== job);
      if (keep.length === q.length) continue;
      this.#queued -= q.reduce((n, c) => n + (c.job === job ? c.count : 0), 0);
      if (keep.length) this.#queues.set(holder, keep);
      else this.#queues.delete(holder);
    }
  }

  #done(slot: Slot, reply: KeygenReply): void {
    const chunk = slot.chunk;
    slot.chunk = undefined;
    if (!chunk) return;
    if ('error' in reply) {
      this.#fail(chunk, new KeynodeError('ERR_INTERNAL', `making node keys or grants failed: ${reply.error}`));
    } else {
      if (chunk.work.op === 'keys') this.#generated += chunk.count;
      const out = results(reply, chunk.count);
      const job = chunk.job;
      if (!job) this.#stock.push(...(out as MintedKey[]));
      else {
        // A job failed meanwhile had this chunk counted as running: count it off now.
        this.#queued -= chunk.count;
        job.left -= chunk.count;
        for (let i = 0; i < out.length; i++) job.out[chunk.start + i] = out[i];
        if (job.left === 0 && !job.failed) job.resolve(job.out);
      }
    }
    this.#pump();
  }
}
