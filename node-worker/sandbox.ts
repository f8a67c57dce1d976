/**
 * @module node-worker/sandbox
 * One SES Compartment per node, after lockdown(): frozen intrinsics, no host globals, no `import()`.
 * Its globalThis is hardened too, so one eval cannot leave anything behind for the next. A worker that
 * serves another node afterwards builds a new Compartment: nothing of the old one is reachable from it.
 */
import { randomFillSync } from 'node:crypto';
import { rewriteScript } from '../protocol/function-source.js';
import { analyzed, setNodeGlobals } from './analysis.js';
import { helperValues } from './compiler-helpers.js';
import { hostError } from './host-errors.js';
import { webGlobals } from './web-globals.js';

declare const Compartment: new (options: { globals?: Record<string, unknown>; __options__: true }) => {
  globalThis: object;
  evaluate(source: string, options?: Record<string, unknown>): unknown;
};
declare function harden<T>(value: T): T;

type UserFn = (...args: unknown[]) => unknown;

/**
 * SES rejects source text that merely looks like a direct eval (`eval(`), strings included. No direct eval
 * can happen here: `eval` in a node is its own global (below), so `eval(x)` is a plain call of it.
 */
const EVALUATE = { __rejectSomeDirectEvalExpressions__: false };

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

/**
 * `Intl`, frozen. Lockdown leaves it out of compartments (it is not an ECMAScript intrinsic), so nothing froze
 * it: hardened here. A Segmenter's segments and their iterator have prototypes only instances reach, and
 * making one to freeze them costs every worker ICU's break iterator (~1.5 MB): nodes get a Segmenter of ours
 * instead, whose segments are arrays of plain segment records. V8's legacy v8BreakIterator is left out.
 */
function nodeIntl(intl: typeof Intl): typeof Intl {
  harden(intl);
  const Native = intl.Segmenter;
  let wrapping: Intl.Segments | undefined;
  class Segments {
    readonly #inner: Intl.Segments;
    constructor() {
      if (!wrapping) throw new TypeError('Illegal constructor');
      this.#inner = wrapping;
      wrapping = undefined;
    }
    containing(index?: number): Intl.SegmentData | undefined {
      const found = this.#inner.containing(index);
      return found && { ...found };
    }
    [Symbol.iterator](): IterableIterator<Intl.SegmentData> {
      return Array.from(this.#inner, (d) => ({ ...d }))[Symbol.iterator]();
    }
  }
  class Segmenter {
    readonly #inner: Intl.Segmenter;
    constructor(locales?: string | string[], options?: Intl.SegmenterOptions) {
      this.#inner = new Native(locales, options);
    }
    segment(input: unknown): Segments {
      wrapping = this.#inner.segment(String(input));
      return new Segments();
    }
    resolvedOptions(): Intl.ResolvedSegmenterOptions {
      return this.#inner.resolvedOptions();
    }
    static supportedLocalesOf(locales: string | string[], options?: { localeMatcher?: 'lookup' | 'best fit' }): string[] {
      return Native.supportedLocalesOf(locales, options);
    }
    get [Symbol.toStringTag](): string {
      return 'Intl.Segmenter';
    }
  }
  // Only instances reach Segments: harden reaching the namespace would not reach it.
  harden(Segments);
  const descriptors = Object.getOwnPropertyDescriptors(intl) as Record<PropertyKey, PropertyDescriptor>;
  delete descriptors.v8BreakIterator;
  if (Native) descriptors.Segmenter = { ...descriptors.Segmenter, value: Segmenter };
  return harden(Object.create(Object.getPrototypeOf(intl), descriptors) as typeof Intl);
}

const CACHE_MAX = 256;

/** The globals every node's Compartment gets besides the shared, frozen intrinsics. */
export type NodeGlobals = Readonly<Record<string, unknown>>;

/**
 * `powerful` holds the start compartment's Date and Math, captured before lockdown tamed the shared ones, and
 * Intl. `console` writes to the running eval's log.
 */
export function nodeGlobals(powerful: { Date: DateConstructor; Math: Math; Intl: typeof Intl }, console: object): NodeGlobals {
  // Date.now() and Math.random() grant no authority over anything outside the node's own process. SES keeps
  // the float arrays out of compartments for a NaN side channel (NaN bit patterns) that matters to
  // deterministic replay, not to isolation: they are hardened intrinsics, safe to share.
  return harden({
    ...webGlobals(),
    Date: powerful.Date,
    Math: csprngMath(powerful.Math),
    Intl: nodeIntl(powerful.Intl),
    Float32Array,
    Float64Array,
    console,
  });
}

export class Sandbox {
  readonly #compartment;
  readonly #compiled = new Map<string, UserFn>();

  constructor(globals: NodeGlobals) {
    let compartment: { evaluate(source: string, options?: Record<string, unknown>): unknown } | undefined;
    // Indirect eval, as SES can only offer (code sees the node's globals, not the caller's locals), with the
    // same rewriting as shipped functions: eval('"<!--"') works as it does in Node.
    const { eval: evaluate } = {
      eval(source: unknown): unknown {
        return typeof source === 'string' ? compartment!.evaluate(rewriteScript(source), EVALUATE) : source;
      },
    };
    this.#compartment = compartment = new Compartment({ globals: { ...globals, eval: evaluate }, __options__: true });
    harden(this.#compartment.globalThis);
    setNodeGlobals(Object.getOwnPropertyNames(this.#compartment.globalThis));
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
    const { source: text, helpers, family } = analyzed(source);
    let value: unknown;
    try {
      // Called with no `this`, as a function in a module: an arrow's `this` is undefined, not globalThis.
      // The compiler helpers it calls arrive as parameters; the newline keeps a trailing line comment from
      // swallowing the closing paren.
      const make = this.#compartment.evaluate(`(function (${helpers.join(', ')}) { return (${text}\n); })`, EVALUATE) as (...h: unknown[]) => unknown;
      value = make.apply(undefined, helperValues(family, helpers));
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
