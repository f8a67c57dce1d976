/**
 * @module container/replay
 * Freshness of signed messages: `ts` must be within the skew window and not before this container
 * started, and each nonce is accepted once. Nonces live in three rotating generations of one window
 * each, so a nonce is remembered for at least two windows: longer than any `ts` it came with stays valid.
 */
import { KeynodeError } from '../../protocol/index.js';

export class ReplayGuard {
  readonly #skewMs: number;
  readonly #bootedAt: number;
  readonly #max: number;
  #generations: Set<string>[] = [new Set(), new Set(), new Set()];
  #rotatedAt: number;

  // About 150 bytes a nonce: a million is ~150 MB, and covers 5,000 messages/s over the three windows.
  constructor(skewMs: number, bootedAt = Date.now(), maxRemembered = 1_000_000) {
    this.#skewMs = skewMs;
    this.#bootedAt = bootedAt;
    this.#rotatedAt = bootedAt;
    this.#max = maxRemembered;
  }

  /** Throws ERR_CLOCK_SKEW for a stale or future `ts`; call before verifying the signature. */
  checkTime(ts: number, now = Date.now()): void {
    if (Math.abs(now - ts) > this.#skewMs) {
      throw new KeynodeError('ERR_CLOCK_SKEW', `message time ${ts} is ${now - ts} ms from this container's clock ${now}; the window is ±${this.#skewMs} ms (sync the clock, or let the client re-sign)`);
    }
    // Nonces seen before a restart are forgotten, so anything signed before it could be replayed.
    if (ts < this.#bootedAt) throw new KeynodeError('ERR_CLOCK_SKEW', `message time ${ts} is before this container started (${this.#bootedAt}); re-sign it`);
  }

  /** Throws ERR_REPLAY for a nonce seen in the window; call after verifying the signature. */
  checkNonce(from: string, nonce: Uint8Array, now = Date.now()): void {
    this.#rotate(now);
    const key = from + Buffer.from(nonce.buffer, nonce.byteOffset, nonce.byteLength).toString('base64');
    for (const g of this.#generations) if (g.has(key)) throw new KeynodeError('ERR_REPLAY', 'this message was already received (same sender and nonce); send a new one');
    if (this.size >= this.#max) throw new KeynodeError('ERR_OVERLOADED', 'too many messages inside the skew window; retry shortly');
    this.#generations[0]!.add(key);
  }

  get size(): number {
    return this.#generations.reduce((n, g) => n + g.size, 0);
  }

  #rotate(now: number): void {
    while (now - this.#rotatedAt >= this.#skewMs) {
      this.#generations = [new Set(), this.#generations[0]!, this.#generations[1]!];
      this.#rotatedAt += this.#skewMs;
      if (now - this.#rotatedAt >= 3 * this.#skewMs) this.#rotatedAt = now; // long quiet spell: skip ahead
    }
  }
}
