/**
 * @module store/tombstones
 * Tombstones expire. A destroyed node leaves a tombstone: for `ttlMs` its ID answers ERR_NODE_DESTROYED and
 * cannot be spawned again; after that it is unknown here (ERR_NODE_NOT_FOUND), and a spawn or a move that
 * brings the node's key may take the ID again. Kept for ever, they would let one tenant that spawns and
 * destroys in a loop grow the store (and start-up, backups) without bound: ~220 bytes a node, ~19 GB a day at
 * a thousand destroys a second.
 *
 * Only the tombstone of a node that never spawned here (nor held a grant here) expires: the destroy decides, from the
 * budget record any spawn leaves (container/policies/budgets.ts `release`); any other stays, since a node
 * spawned again under that ID would be its children's ancestor. A move that brings descendants of a
 * destroyed node makes its tombstone permanent too. Tombstones written before expiry existed stay.
 *
 * Each expiring tombstone has a key in sublevel `o` ordered by when it was written, so a sweep reads only the
 * expired head of that range, never the whole store. Sweeps run every `min(ttlMs, an hour)` (at least a
 * second apart), so a tombstone lives between `ttlMs` and `ttlMs` plus that period.
 */
import type { Store } from './store.js';

/** How often tombstones are swept when their time to live is long, and at most. */
const SWEEP_EVERY_MS = 60 * 60 * 1000;
const SWEEP_FLOOR_MS = 1000;
/** Tombstones removed per batch: the sweep yields to the event loop between batches. */
const CHUNK = 1024;

export class TombstoneExpiry {
  readonly #store: Store;
  readonly #ttlMs: number;
  readonly #onError: (e: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #closed = false;
  /** Tombstones this process removed. */
  expired = 0;

  constructor(store: Store, ttlMs: number, onError: (e: unknown) => void) {
    this.#store = store;
    this.#ttlMs = ttlMs;
    this.#onError = onError;
  }

  /** Sweeps now and every period. */
  start(): void {
    const sweep = (): void => {
      if (this.#running || this.#closed) return; // one sweep at a time: a long one is not stacked on
      this.#running = this.sweep()
        .then(() => undefined, this.#onError)
        .finally(() => {
          this.#running = undefined;
        });
    };
    sweep();
    this.#timer = setInterval(sweep, Math.max(SWEEP_FLOOR_MS, Math.min(this.#ttlMs, SWEEP_EVERY_MS))).unref();
  }

  /** Removes every expiring tombstone older than the time to live at `now`; returns how many. */
  async sweep(now = Date.now()): Promise<number> {
    let total = 0;
    while (!this.#closed) {
      const n = await this.#store.expireTombstones(now - this.#ttlMs, CHUNK);
      total += n;
      this.expired += n;
      if (n < CHUNK) break;
    }
    return total;
  }

  /** Stops sweeping; resolves once a sweep under way has finished its batch. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#running;
  }
}
