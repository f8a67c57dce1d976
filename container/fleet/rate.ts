/**
 * @module container/fleet/rate
 * An event rate that forgets: each event adds 1/window, and the sum decays by e^(-t/window). A steady
 * stream of r events per second settles at r; after the stream stops, the rate falls by e every window.
 */
export class DecayingRate {
  readonly #windowMs: number;
  #value = 0;
  #at = 0;

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /** Events per second as of `now`. */
  value(now = Date.now()): number {
    return this.#value * Math.exp(-(now - this.#at) / this.#windowMs);
  }

  hit(now = Date.now()): void {
    this.#value = this.value(now) + 1000 / this.#windowMs;
    this.#at = now;
  }
}

/**
 * A budget that refills at `perSecond` up to `burst`. `take` is all or nothing (what is refused is dropped);
 * `spend` may run into debt (a frame is never split), and `wait` says how long until the debt is paid.
 */
export class TokenBucket {
  readonly #perMs: number;
  readonly #burst: number;
  #level: number;
  #at = performance.now();

  constructor(perSecond: number, burst: number) {
    this.#perMs = perSecond / 1000;
    this.#burst = burst;
    this.#level = burst;
  }

  #refill(now: number): number {
    this.#level = Math.min(this.#burst, this.#level + (now - this.#at) * this.#perMs);
    this.#at = now;
    return this.#level;
  }

  take(n: number, now = performance.now()): boolean {
    if (this.#refill(now) < n) return false;
    this.#level -= n;
    return true;
  }

  spend(n: number, now = performance.now()): void {
    this.#refill(now);
    this.#level -= n;
  }

  /** Milliseconds until the level is positive again (0 when it is). */
  wait(now = performance.now()): number {
    const level = this.#refill(now);
    return level > 0 ? 0 : Math.ceil((1 - level) / this.#perMs);
  }

  /** What is left now: negative while in debt. */
  level(now = performance.now()): number {
    return this.#refill(now);
  }
}
