/**
 * @module node-worker/sandbox
 * One SES Compartment per worker, after lockdown(): frozen intrinsics, no host globals, no `import()`.
 * Its globalThis is hardened too, so one eval cannot leave anything behind for the next.
 */
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

const CACHE_MAX = 256;

export class Sandbox {
  readonly #compartment;
  readonly #compiled = new Map<string, UserFn>();

  /** `powerful` holds the start compartment's Date and Math, captured before lockdown tamed the shared ones. */
  constructor(powerful: { Date: DateConstructor; Math: Math }) {
    // Date.now() and Math.random() grant no authority over anything outside the node's own process.
    const globals = { Date: powerful.Date, Math: powerful.Math, TextEncoder: harden(SafeTextEncoder), TextDecoder: harden(SafeTextDecoder) };
    this.#compartment = new Compartment({ globals, __options__: true });
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
