/**
 * @module node-worker/sandbox
 * One SES Compartment per worker, after lockdown(): frozen intrinsics, no host globals, no `import()`.
 * Its globalThis is hardened too, so one eval cannot leave anything behind for the next.
 */
import { hostError } from './host-errors.js';

declare const Compartment: new (options: { globals?: Record<string, unknown>; __options__: true }) => {
  globalThis: object;
  evaluate(source: string): unknown;
};
declare function harden<T>(value: T): T;

type UserFn = (...args: unknown[]) => unknown;
const CACHE_MAX = 256;

export class Sandbox {
  readonly #compartment;
  readonly #compiled = new Map<string, UserFn>();

  /** `powerful` holds the start compartment's Date and Math, captured before lockdown tamed the shared ones. */
  constructor(powerful: { Date: DateConstructor; Math: Math }) {
    // Date.now() and Math.random() grant no authority over anything outside the node's own process.
    this.#compartment = new Compartment({ globals: { Date: powerful.Date, Math: powerful.Math }, __options__: true });
    harden(this.#compartment.globalThis);
  }

  /** Compiles function source once; the function is hardened so evals cannot hang state on it. */
  compile(source: string): UserFn {
    let fn = this.#compiled.get(source);
    if (fn) return fn;
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
    this.#compiled.set(source, fn);
    return fn;
  }
}
