/**
 * @module node-worker/web-globals
 * The I/O-free part of the web platform a node gets: URL, URLSearchParams, TextEncoder, TextDecoder, atob,
 * btoa, structuredClone, crypto (getRandomValues, randomUUID, subtle.digest), queueMicrotask.
 *
 * Node's own classes are not intrinsics: lockdown never froze their prototypes, their iterators' prototypes
 * or the error classes they throw, and any of those reached by a node's code could be changed for every later
 * eval and node of the process. So each is wrapped here in a class of ours, hardened with the globals; a
 * wrapper keeps Node's object in a private field, returns only intrinsic values (strings, arrays, array
 * iterators, ArrayBuffers) and turns Node's errors into plain intrinsic errors.
 */
import { createHash, randomFillSync, randomUUID as nodeRandomUUID } from 'node:crypto';
import { TextDecoder as NodeTextDecoder, TextEncoder as NodeTextEncoder } from 'node:util';

declare function harden<T>(value: T): T;

const NodeURL = globalThis.URL;
const NodeURLSearchParams = globalThis.URLSearchParams;
const nodeStructuredClone = globalThis.structuredClone;
const nodeAtob = globalThis.atob;
const nodeBtoa = globalThis.btoa;
const nodeQueueMicrotask = globalThis.queueMicrotask;

/** A host error as a plain intrinsic one: same name and message (and code), nothing of Node's classes. */
function plainError(e: unknown, Kind: ErrorConstructor = Error): Error {
  let message: string;
  let name: string | undefined;
  let code: unknown;
  try {
    message = String((e as Error)?.message ?? e);
    name = typeof (e as Error)?.name === 'string' ? (e as Error).name : undefined;
    code = (e as { code?: unknown })?.code;
  } catch {
    message = 'error';
  }
  const kind = name === 'TypeError' ? TypeError : name === 'RangeError' ? RangeError : name === 'SyntaxError' ? SyntaxError : Kind;
  const out = new kind(message);
  if (name && name !== kind.name) Object.defineProperty(out, 'name', { value: name, writable: true, configurable: true });
  if (typeof code === 'string') Object.defineProperty(out, 'code', { value: code, writable: true, configurable: true, enumerable: true });
  return out;
}

function plain<T>(f: () => T, Kind?: ErrorConstructor): T {
  try {
    return f();
  } catch (e) {
    throw plainError(e, Kind);
  }
}

const utf8 = new NodeTextEncoder();

/** Node's TextEncoder/TextDecoder, behind classes whose prototypes are hardened with the compartment. */
export class TextEncoder {
  get encoding(): string {
    return 'utf-8';
  }
  encode(input: unknown = ''): Uint8Array {
    // A copy: Node may hand out a view on a pooled buffer.
    return new Uint8Array(utf8.encode(String(input)));
  }
  encodeInto(source: unknown, destination: Uint8Array): { read: number; written: number } {
    if (!(destination instanceof Uint8Array)) throw new TypeError('encodeInto: the destination must be a Uint8Array');
    const { read, written } = utf8.encodeInto(String(source), destination);
    return { read, written };
  }
  get [Symbol.toStringTag](): string {
    return 'TextEncoder';
  }
}

export class TextDecoder {
  readonly #decoder: NodeTextDecoder;
  constructor(label: unknown = 'utf-8', options?: { fatal?: unknown; ignoreBOM?: unknown }) {
    this.#decoder = plain(() => new NodeTextDecoder(String(label), { fatal: Boolean(options?.fatal), ignoreBOM: Boolean(options?.ignoreBOM) }), RangeError);
  }
  get encoding(): string {
    return this.#decoder.encoding;
  }
  get fatal(): boolean {
    return this.#decoder.fatal;
  }
  get ignoreBOM(): boolean {
    return this.#decoder.ignoreBOM;
  }
  decode(input?: unknown, options?: { stream?: unknown }): string {
    return plain(() => this.#decoder.decode(input as Uint8Array | undefined, { stream: Boolean(options?.stream) }), TypeError);
  }
  get [Symbol.toStringTag](): string {
    return 'TextDecoder';
  }
}

/** Set while a URL wraps the URLSearchParams Node's URL holds, so that wrapper shares (and edits) it. */
let adopting: globalThis.URLSearchParams | undefined;

export class URLSearchParams {
  readonly #inner: globalThis.URLSearchParams;
  constructor(init?: unknown) {
    if (adopting) {
      this.#inner = adopting;
      adopting = undefined;
      return;
    }
    const source = init instanceof URLSearchParams ? init.#inner : init;
    this.#inner = plain(() => new NodeURLSearchParams(source as string), TypeError);
  }
  get size(): number {
    return this.#inner.size;
  }
  append(name: unknown, value: unknown): void {
    plain(() => this.#inner.append(String(name), String(value)), TypeError);
  }
  delete(name: unknown, value?: unknown): void {
    plain(() => (value === undefined ? this.#inner.delete(String(name)) : this.#inner.delete(String(name), String(value))), TypeError);
  }
  get(name: unknown): string | null {
    return this.#inner.get(String(name));
  }
  getAll(name: unknown): string[] {
    return [...this.#inner.getAll(String(name))];
  }
  has(name: unknown, value?: unknown): boolean {
    return value === undefined ? this.#inner.has(String(name)) : this.#inner.has(String(name), String(value));
  }
  set(name: unknown, value: unknown): void {
    plain(() => this.#inner.set(String(name), String(value)), TypeError);
  }
  sort(): void {
    this.#inner.sort();
  }
  forEach(callback: (value: string, key: string, parent: URLSearchParams) => void, thisArg?: unknown): void {
    if (typeof callback !== 'function') throw new TypeError('URLSearchParams.forEach: the callback must be a function');
    for (const [k, v] of [...this.#inner]) callback.call(thisArg, v, k, this);
  }
  // Arrays' iterators: intrinsic (frozen), unlike Node's URLSearchParams Iterator.
  keys(): IterableIterator<string> {
    return [...this.#inner.keys()][Symbol.iterator]();
  }
  values(): IterableIterator<string> {
    return [...this.#inner.values()][Symbol.iterator]();
  }
  entries(): IterableIterator<[string, string]> {
    return [...this.#inner].map(([k, v]) => [k, v] as [string, string])[Symbol.iterator]();
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
  toString(): string {
    return this.#inner.toString();
  }
  get [Symbol.toStringTag](): string {
    return 'URLSearchParams';
  }
}

function invalidURL(e: unknown): TypeError {
  const out = plainError(e, TypeError);
  return out instanceof TypeError ? out : new TypeError('Invalid URL');
}

export class URL {
  readonly #inner: globalThis.URL;
  #params: URLSearchParams | undefined;
  constructor(url: unknown, base?: unknown) {
    const href = String(url);
    const from = base === undefined ? undefined : String(base);
    try {
      this.#inner = new NodeURL(href, from);
    } catch (e) {
      throw invalidURL(e);
    }
  }
  static canParse(url: unknown, base?: unknown): boolean {
    try {
      new NodeURL(String(url), base === undefined ? undefined : String(base));
      return true;
    } catch {
      return false;
    }
  }
  get href(): string {
    return this.#inner.href;
  }
  set href(v: string) {
    try {
      this.#inner.href = String(v);
    } catch (e) {
      throw invalidURL(e);
    }
  }
  get origin(): string {
    return this.#inner.origin;
  }
  get protocol(): string {
    return this.#inner.protocol;
  }
  set protocol(v: string) {
    this.#inner.protocol = String(v);
  }
  get username(): string {
    return this.#inner.username;
  }
  set username(v: string) {
    this.#inner.username = String(v);
  }
  get password(): string {
    return this.#inner.password;
  }
  set password(v: string) {
    this.#inner.password = String(v);
  }
  get host(): string {
    return this.#inner.host;
  }
  set host(v: string) {
    this.#inner.host = String(v);
  }
  get hostname(): string {
    return this.#inner.hostname;
  }
  set hostname(v: string) {
    this.#inner.hostname = String(v);
  }
  get port(): string {
    return this.#inner.port;
  }
  set port(v: string) {
    this.#inner.port = String(v);
  }
  get pathname(): string {
    return this.#inner.pathname;
  }
  set pathname(v: string) {
    this.#inner.pathname = String(v);
  }
  get search(): string {
    return this.#inner.search;
  }
  set search(v: string) {
    this.#inner.search = String(v);
  }
  get hash(): string {
    return this.#inner.hash;
  }
  set hash(v: string) {
    this.#inner.hash = String(v);
  }
  get searchParams(): URLSearchParams {
    if (!this.#params) {
      adopting = this.#inner.searchParams;
      this.#params = new URLSearchParams();
    }
    return this.#params;
  }
  toString(): string {
    return this.#inner.href;
  }
  toJSON(): string {
    return this.#inner.href;
  }
  get [Symbol.toStringTag](): string {
    return 'URL';
  }
}

function atob(data: unknown): string {
  if (arguments.length === 0) throw new TypeError('atob: 1 argument required');
  return plain(() => nodeAtob(String(data)));
}

function btoa(data: unknown): string {
  if (arguments.length === 0) throw new TypeError('btoa: 1 argument required');
  return plain(() => nodeBtoa(String(data)));
}

function structuredClone(value: unknown, options?: unknown): unknown {
  return plain(() => nodeStructuredClone(value, options as Parameters<typeof nodeStructuredClone>[1]));
}

function queueMicrotask(callback: unknown): void {
  if (typeof callback !== 'function') throw new TypeError('queueMicrotask: the callback must be a function');
  nodeQueueMicrotask(callback as () => void);
}

const typedArrayTag = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Int8Array.prototype), Symbol.toStringTag)!.get as (this: unknown) => string | undefined;
const INTEGER_ARRAYS = new Set(['Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array', 'BigInt64Array', 'BigUint64Array']);
const DIGESTS: Record<string, string> = { 'SHA-1': 'sha1', 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' };

function named(name: string, message: string): Error {
  const e = new Error(message);
  Object.defineProperty(e, 'name', { value: name, writable: true, configurable: true });
  return e;
}

function getRandomValues<T>(array: T): T {
  const tag = ArrayBuffer.isView(array) ? typedArrayTag.call(array) : undefined;
  if (!tag || !INTEGER_ARRAYS.has(tag)) throw named('TypeMismatchError', 'getRandomValues: the argument must be an integer typed array');
  const view = array as unknown as ArrayBufferView;
  if (view.byteLength > 65536) throw named('QuotaExceededError', `getRandomValues: ${view.byteLength} bytes asked, at most 65536`);
  randomFillSync(view as Uint8Array);
  return array;
}

function randomUUID(): string {
  return nodeRandomUUID();
}

function digest(algorithm: unknown, data: unknown): Promise<ArrayBuffer> {
  return new Promise((resolve, reject) => {
    try {
      const raw = typeof algorithm === 'string' ? algorithm : (algorithm as { name?: unknown } | null)?.name;
      const name = typeof raw === 'string' ? DIGESTS[raw.toUpperCase()] : undefined;
      if (!name) throw named('NotSupportedError', `digest: unsupported algorithm ${typeof raw === 'string' ? raw.slice(0, 40) : typeof raw}; use SHA-1, SHA-256, SHA-384 or SHA-512`);
      let bytes: Uint8Array;
      if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
      else throw new TypeError('digest: data must be an ArrayBuffer, a typed array or a DataView');
      resolve(new Uint8Array(createHash(name).update(bytes).digest()).buffer);
    } catch (e) {
      reject(plainError(e));
    }
  });
}

/** Everything this module adds to a node's globals (hardened by the caller). */
export function webGlobals(): Record<string, unknown> {
  return {
    URL,
    URLSearchParams,
    TextEncoder,
    TextDecoder,
    atob,
    btoa,
    structuredClone,
    queueMicrotask,
    crypto: { getRandomValues, randomUUID, subtle: { digest } },
  };
}
