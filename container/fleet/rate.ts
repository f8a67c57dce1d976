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
