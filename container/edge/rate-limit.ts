/**
 * @module container/edge/rate-limit
 * A token bucket per source address, for what costs the container public-key work on behalf of anyone
 * (a session handshake, a signed "no such session", a signed clock): a burst from fresh keys on one address
 * is refused with ERR_OVERLOADED once its bucket is empty, and other addresses are not slowed. IPv6 addresses
 * count by their /64, which one host usually holds whole. The table of addresses is bounded.
 */
import { KeynodeError } from '../../protocol/index.js';

const MAX_ADDRESSES = 65_536;

export function addressKey(address: string | undefined): string {
  if (!address) return '?';
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  if (!address.includes(':')) return address;
  const groups = address.split('::');
  const head = groups[0] ? groups[0].split(':') : [];
  const tail = groups.length > 1 && groups[1] ? groups[1].split(':') : [];
  const full = [...head, ...Array(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail];
  return `${full.slice(0, 4).join(':')}::/64`;
}

export class AddressLimiter {
  readonly #perSecond: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(perSecond: number, burst: number) {
    this.#perSecond = perSecond;
    this.#burst = burst;
  }

  /** Takes a token for this address, or returns false when it has none left. */
  take(address: string | undefined, now = Date.now()): boolean {
    const key = addressKey(address);
    let b = this.#buckets.get(key);
    if (b) {
      this.#buckets.delete(key); // re-inserted last: the map's order is least recently used first
      b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) * this.#perSecond) / 1000);
      b.at = now;
    } else {
      b = { tokens: this.#burst, at: now };
      // A full bucket is what a forgotten address gets anyway: the oldest may go.
      if (this.#buckets.size >= MAX_ADDRESSES) this.#buckets.delete(this.#buckets.keys().next().value!);
    }
    this.#buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Throws ERR_OVERLOADED when `take` refuses. */
  check(address: string | undefined, what: string): void {
    if (!this.take(address)) throw new KeynodeError('ERR_OVERLOADED', `too many ${what} from ${addressKey(address)}; at most ${this.#perSecond}/s (bursts of ${this.#burst}) per address. Retry shortly`);
  }
}
