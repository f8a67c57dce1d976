/**
 * @module container/replay
 * Freshness of signed messages: `ts` must be within the skew window and not before this container
 * started, and each nonce is accepted once. Nonces live in three rotating generations of one window
 * each, so a nonce is remembered for at least two windows: longer than any `ts` it came with stays valid.
 */
import { KeynodeError } from '../../protocol/index.js';
import { addressKey } from './rate-limit.js';

/** Nonces of one generation, and how many of them each sender and each source address holds. */
interface Generation {
  nonces: Set<string>;
  bySender: Map<string, number>;
  byAddress: Map<string, number>;
}

const generation = (): Generation => ({ nonces: new Set(), bySender: new Map(), byAddress: new Map() });

export class ReplayGuard {
  readonly #skewMs: number;
  readonly #bootedAt: number;
  readonly #max: number;
  readonly #perSender: number;
  readonly #perAddress: number;
  #generations: Generation[] = [generation(), generation(), generation()];
  #rotatedAt: number;

  /**
   * About 150 bytes a nonce: a million is ~150 MB, and covers 5,000 messages/s over the three windows. One
   * sender holds at most 1% of that and one source address 10% (`shares`), so a flood from fresh keys on a
   * few addresses cannot fill it for everyone (sessions do not use it at all; only one-off messages do).
   */
  constructor(skewMs: number, bootedAt = Date.now(), maxRemembered = 1_000_000, shares: { perSender?: number; perAddress?: number } = {}) {
    this.#skewMs = skewMs;
    this.#bootedAt = bootedAt;
    this.#rotatedAt = bootedAt;
    this.#max = maxRemembered;
    this.#perSender = shares.perSender ?? Math.max(Math.floor(maxRemembered / 100), Math.min(maxRemembered, 1000));
    this.#perAddress = shares.perAddress ?? Math.max(Math.floor(maxRemembered / 10), Math.min(maxRemembered, 10_000));
  }

  /** Throws ERR_CLOCK_SKEW for a stale or future `ts`; call before verifying the signature. */
  checkTime(ts: number, now = Date.now()): void {
    if (Math.abs(now - ts) > this.#skewMs) {
      throw new KeynodeError('ERR_CLOCK_SKEW', `message time ${ts} is ${now - ts} ms from this container's clock ${now}; the window is ±${this.#skewMs} ms (sync the clock, or let the client re-sign)`);
    }
    // Nonces seen before a restart are forgotten, so anything signed before it could be replayed.
    if (ts < this.#bootedAt) throw new KeynodeError('ERR_CLOCK_SKEW', `message time ${ts} is before this container started (${this.#bootedAt}); re-sign it`);
  }

  /**
   * Throws ERR_REPLAY for a nonce seen in the window, ERR_OVERLOADED when the sender or its address holds its
   * whole share (or the cache is full); call after verifying the signature.
   */
  checkNonce(from: string, nonce: Uint8Array, now = Date.now(), address?: string): void {
    this.#rotate(now);
    const key = from + Buffer.from(nonce.buffer, nonce.byteOffset, nonce.byteLength).toString('base64');
    for (const g of this.#generations) if (g.nonces.has(key)) throw new KeynodeError('ERR_REPLAY', 'this message was already received (same sender and nonce); send a new one');
    const where = addressKey(address);
    if (this.#held('bySender', from) >= this.#perSender) throw new KeynodeError('ERR_OVERLOADED', `sender ${from} sent ${this.#perSender} one-off messages inside the skew window, its share of the replay cache; use a session, or retry shortly`);
    if (this.#held('byAddress', where) >= this.#perAddress) throw new KeynodeError('ERR_OVERLOADED', `too many one-off messages from ${where} inside the skew window (its share of the replay cache); retry shortly`);
    if (this.size >= this.#max) throw new KeynodeError('ERR_OVERLOADED', 'too many messages inside the skew window; retry shortly');
    const g = this.#generations[0]!;
    g.nonces.add(key);
    g.bySender.set(from, (g.bySender.get(from) ?? 0) + 1);
    g.byAddress.set(where, (g.byAddress.get(where) ?? 0) + 1);
  }

  #held(which: 'bySender' | 'byAddress', key: string): number {
    let n = 0;
    for (const g of this.#generations) n += g[which].get(key) ?? 0;
    return n;
  }

  get size(): number {
    return this.#generations.reduce((n, g) => n + g.nonces.size, 0);
  }

  #rotate(now: number): void {
    while (now - this.#rotatedAt >= this.#skewMs) {
      this.#generations = [generation(), this.#generations[0]!, this.#generations[1]!];
      this.#rotatedAt += this.#skewMs;
      if (now - this.#rotatedAt >= 3 * this.#skewMs) this.#rotatedAt = now; // long quiet spell: skip ahead
    }
  }
}
