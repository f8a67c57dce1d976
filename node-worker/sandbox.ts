/**
 * @module node-worker/sandbox
 * One SES Compartment per node, after lockdown(): frozen intrinsics, no host globals, no `import()`.
 * Its globalThis is hardened too, so one eval cannot leave anything behind for the next. A worker that
 * serves another node afterwards builds a new Compartment: nothing of the old one is reachable from it.
 */
import { randomFillSync } from 'node:crypto';
import { TextDecoder as NodeTextDecoder, TextEncoder as NodeTextEncoder } from 'node:util';
import { hostError } from './host-errors.js';

declare const Compartment: new (options: { globals?: Record<string, unknown>; __options__: true }) => {
  globalThis: object;
  evaluate(source: string): unknown;
};
declare function harden<T>(value: T): T;

type UserFn = (...args: unknown[]) => unknown;

/** Node's own errors have prototypes lockdown never froze; rethrown as plain TypeErrors they leak nothing. */
function plain<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new TypeError(String((e as Error)?.message ?? e));
  }
}

const utf8 = new NodeTextEncoder();

/** Node's TextEncoder/TextDecoder, behind classes whose prototypes are hardened with the compartment. */
class SafeTextEncoder {
  get encoding(): string {
    return 'utf-8';
  }
  encode(input: unknown = ''): Uint8Array {
    return utf8.encode(String(input));
  }
}

class SafeTextDecoder {
  readonly #decoder: NodeTextDecoder;
  constructor(label: unknown = 'utf-8', options?: { fatal?: unknown; ignoreBOM?: unknown }) {
    this.#decoder = plain(() => new NodeTextDecoder(String(label), { fatal: Boolean(options?.fatal), ignoreBOM: Boolean(options?.ignoreBOM) }));
  }
  get encoding(): string {
    return this.#decoder.encoding;
  }
  decode(input?: unknown, options?: { stream?: unknown }): string {
    return plain(() => this.#decoder.decode(input as Uint8Array | undefined, { stream: Boolean(options?.stream) }));
  }
}

/**
 * `Math` with `random()` from the operating system's CSPRNG. V8's own Math.random is one xorshift128+ state
 * per process, which a node can run backwards from its outputs: a node served later by the same process
 * could recover what an earlier node drew. CSPRNG output says nothing of the draws before or after it.
 */
function csprngMath(original: Math): Math {
  const pool = new Uint32Array(1024);
  let next = pool.length;
  const random = (): number => {
    if (next + 2 > pool.length) {
      randomFillSync(pool);
      next = 0;
    }
    // 53 random bits, the precision of a double in [0, 1).
    const hi = pool[next++]! >>> 5;
    const lo = pool[next++]! >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  };
  const descriptors = Object.getOwnPropertyDescriptors(original);
  descriptors.random = { value: random, writable: false, enumerable: false, configurable: false };
  return Object.create(Object.getPrototypeOf(original), descriptors) as Math;
}

const CACHE_MAX = 256;

/** The globals every node's Compartment gets besides the shared, frozen intrinsics. */
export interface NodeGlobals {
  Date: DateConstructor;
  Math: Math;
  TextEncoder: unknown;
  TextDecoder: unknown;
}

/** `powerful` holds the start compartment's Date and Math, captured before lockdown tamed the shared ones. */
export function nodeGlobals(powerful: { Date: DateConstructor; Math: Math }): NodeGlobals {
  // Date.now() and Math.random() grant no authority over anything outside the node's own process.
  return harden({ Date: powerful.Date, Math: csprngMath(powerful.Math), TextEncoder: SafeTextEncoder, TextDecoder: SafeTextDecoder });
}

export class Sandbox {
  readonly #compartment;
  readonly #compiled = new Map<string, UserFn>();

  constructor(globals: NodeGlobals) {
    this.#compartment = new Compartment({ globals: { ...globals }, __options__: true });
    harden(this.#compartment.globalThis);
    // SES builds a Compartment's evaluator on its first evaluation: do it now, before any node's code.
    this.#compartment.evaluate('0');
  }

  /** Whether the function with this hash (SHA-256 of its source, computed by the container) is compiled here. */
  has(h: string): boolean {
    return this.#compiled.has(h);
  }

  /**
   * The function named `h`, compiled from `source` the first time; hardened so evals cannot hang state on it.
   * The container sends the source whenever it cannot be sure this Compartment has it.
   */
  compile(h: string, source: string | undefined): UserFn {
    let fn = this.#compiled.get(h);
    if (fn) return fn;
    if (source === undefined) throw hostError('ERR_UNKNOWN_CODE', 'this worker does not have that function');
    let value: unknown;
    try {
      // The newline keeps a trailing line comment in the source from swallowing the closing paren.
      value = this.#compartment.evaluate(`(${source}\n)`);
    } catch (e) {
      throw hostError('ERR_BAD_FUNCTION', `the function does not compile: ${(e as Error)?.message ?? String(e)}`);
    }
    if (typeof value !== 'function') throw hostError('ERR_BAD_FUNCTION', 'the source is not a function expression');
    fn = harden(value as UserFn);
    if (this.#compiled.size >= CACHE_MAX) this.#compiled.delete(this.#compiled.keys().next().value!);
    this.#compiled.set(h, fn);
    return fn;
  }
}
