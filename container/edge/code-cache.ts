/**
 * @module container/edge/code-cache
 * Function sources by SHA-256, so an eval can name its function by hash after the first time. The hash is
 * always computed here from the source, never taken from a sender, so no one can bind a hash to other code.
 * Bounded in entries and in bytes, least recently used first out: a client sending a million distinct
 * functions costs the others at most a resend each (ERR_UNKNOWN_CODE, which clients answer with the source).
 */
import { codeHash, KeynodeError } from '../../protocol/index.js';

export class CodeCache {
  readonly #entries = new Map<string, string>();
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  #bytes = 0;
  hits = 0;
  misses = 0;

  constructor(maxEntries = 4096, maxBytes = 64 * 1024 * 1024) {
    this.#maxEntries = maxEntries;
    this.#maxBytes = maxBytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Keeps `source` (when it fits) and returns its hash. */
  add(source: string): string {
    const h = codeHash(source);
    if (this.#entries.has(h)) {
      this.#touch(h, source);
      return h;
    }
    // Strings are UTF-16 in memory: two bytes a character is what they hold here.
    const size = 2 * source.length;
    if (size > this.#maxBytes / 4) return h; // a huge function is not worth evicting many others for
    while (this.#entries.size >= this.#maxEntries || (this.#bytes + size > this.#maxBytes && this.#entries.size)) {
      const [oldest, src] = this.#entries.entries().next().value!;
      this.#entries.delete(oldest);
      this.#bytes -= 2 * src.length;
    }
    this.#entries.set(h, source);
    this.#bytes += size;
    return h;
  }

  #touch(h: string, source: string): void {
    this.#entries.delete(h);
    this.#entries.set(h, source);
  }

  /** The source of `h`, or ERR_UNKNOWN_CODE (the client then sends the source). */
  get(h: string): string {
    const source = this.#entries.get(h);
    if (source === undefined) {
      this.misses++;
      throw new KeynodeError('ERR_UNKNOWN_CODE', `this container does not have the function ${h.slice(0, 16)}…; send its source`);
    }
    this.hits++;
    this.#touch(h, source);
    return source;
  }
}
