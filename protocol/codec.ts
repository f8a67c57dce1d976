/**
 * @module protocol/codec
 * MessagePack with extensions for what `structuredClone` carries and plain MessagePack does not: a node
 * reference (ext 1, payload = its URL), BigInt (2), Map (3), Set (4) and typed arrays, ArrayBuffer and
 * DataView (5), each round-tripping exactly, nested in any combination. Anything MessagePack would silently
 * reshape (a class instance, a Promise) or cannot carry (a function, a symbol, a cycle) is refused with the
 * path to the bad value: `result.items[3].owner is a class instance (Customer)`.
 */
import { Decoder, Encoder, ExtensionCodec } from '@msgpack/msgpack';
import { decodeScalars, encodeScalar } from './scalar-codec.js';
import { KeynodeError } from './errors.js';
import { parseNodeUrl, type NodeId } from './ids.js';

const kNodeRef = Symbol.for('keynode.noderef');
export const NODE_REF_EXT = 1;
export const BIGINT_EXT = 2;
export const MAP_EXT = 3;
export const SET_EXT = 4;
export const BINARY_EXT = 5;
const REFUSED_EXT = 127;

/** A reference to a node: what handles and `ctx.here` are on the wire. Serializes to its URL. */
export class NodeRef {
  readonly id: NodeId;
  readonly url: string;
  constructor(url: string) {
    const p = parseNodeUrl(url);
    this.id = p.id;
    this.url = p.url;
  }
  get [kNodeRef](): true {
    return true;
  }
  toString(): string {
    return this.url;
  }
  toJSON(): string {
    return this.url;
  }
}

export function isNodeRefLike(v: unknown): v is { id: NodeId; url: string } {
  return typeof v === 'object' && v !== null && kNodeRef in v && typeof (v as { url?: unknown }).url === 'string';
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** Maps and Sets inside Maps and Sets past this depth are refused (each level is a nested encode). */
const MAX_NESTING = 100;

// Captured once: what a value is, asked of the intrinsics, not of the value (which may lie or be a Proxy).
const typedArrayTag = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Int8Array.prototype), Symbol.toStringTag)!.get as (this: unknown) => string | undefined;
const mapForEach = Map.prototype.forEach;
const setForEach = Set.prototype.forEach;
const getPrototypeOf = Object.getPrototypeOf;

/** Binary kinds of the BINARY_EXT payload's first byte. Uint8Array itself stays MessagePack bin. */
const BINARY_KINDS = ['ArrayBuffer', 'Int8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array', 'DataView'] as const;
const BINARY_CTORS: Record<string, new (buffer: ArrayBuffer) => unknown> = {
  Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array, DataView,
};
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

function isArrayBuffer(v: object): v is ArrayBuffer {
  // Every object encoded passes here: no try/catch. A fake (an object with ArrayBuffer.prototype) fails to
  // encode, as it should.
  return v instanceof ArrayBuffer;
}

/** Which binary kind `v` is, or undefined for anything else (Uint8Array and Buffer: plain bin). */
function binaryKind(v: object): number | undefined {
  if (ArrayBuffer.isView(v)) {
    const tag = typedArrayTag.call(v);
    if (tag === 'Uint8Array') return undefined;
    return BINARY_KINDS.indexOf((tag ?? 'DataView') as (typeof BINARY_KINDS)[number]);
  }
  return isArrayBuffer(v) ? 0 : undefined;
}

function bigintBytes(v: bigint): Uint8Array {
  const negative = v < 0n;
  let hex = (negative ? -v : v).toString(16);
  if (hex === '0') hex = '';
  else if (hex.length % 2) hex = `0${hex}`;
  const out = new Uint8Array(1 + hex.length / 2);
  out[0] = negative ? 1 : 0;
  out.set(Buffer.from(hex, 'hex'), 1);
  return out;
}

function bigintFrom(data: Uint8Array): bigint {
  if (data.length === 0 || data[0]! > 1) throw new KeynodeError('ERR_BAD_MESSAGE', 'a BigInt extension has a bad sign byte');
  const hex = Buffer.from(data.buffer, data.byteOffset + 1, data.length - 1).toString('hex');
  const magnitude = hex ? BigInt(`0x${hex}`) : 0n;
  return data[0] === 1 ? -magnitude : magnitude;
}

/** Thrown inside an extension encoder: the encoder's path is lost, so the caller walks the value to name it. */
class Refused extends Error {}

function refuse(what: string): never {
  throw new Refused(what);
}

export interface ValueCodec {
  /** `label` names the value in refusals: 'result', 'args', 'value'. */
  encode(v: unknown, label?: string): Uint8Array;
  decode(b: Uint8Array): unknown;
}

/**
 * The extension codec. With `values`, it also carries BigInt, Map, Set and binary kinds (whose payloads are
 * MessagePack themselves, encoded and decoded with this same codec); without, it is the protocol's: envelopes
 * from strangers are decoded with length caps that a nested decode would not honour.
 */
export function makeExtensionCodec(makeRef: (url: string) => unknown = (url) => new NodeRef(url), values = false): ExtensionCodec {
  const codec = new ExtensionCodec();
  codec.register({
    type: NODE_REF_EXT,
    encode: (v: unknown) => {
      if (typeof v !== 'object' || v === null || !(kNodeRef in v)) return null;
      // Read once and check: a getter must not hand the encoder one URL and the peer another.
      const url = (v as { url?: unknown }).url;
      if (typeof url !== 'string') throw new KeynodeError('ERR_RESULT', 'a node reference needs a URL');
      try {
        return textEncoder.encode(parseNodeUrl(url).url);
      } catch (cause) {
        throw new KeynodeError('ERR_RESULT', `a node reference with a bad URL cannot be sent: ${(cause as Error).message}`);
      }
    },
    decode: (data: Uint8Array) => {
      let url: string;
      try {
        url = textDecoder.decode(data);
      } catch {
        throw new KeynodeError('ERR_BAD_MESSAGE', 'a node reference is not UTF-8');
      }
      return makeRef(url);
    },
  });
  if (values) registerValues(codec);
  // Registered last, it sees every object no other extension took: plain data passes (null: encode it as
  // usual); anything MessagePack would silently reshape (a class instance as its fields, a forgotten
  // Promise as {}) or cannot carry (a function, a symbol) is refused instead.
  codec.register({
    type: REFUSED_EXT,
    encode: (v: unknown) => {
      if (typeof v === 'function') refuse('a function');
      if (typeof v === 'symbol') refuse('a symbol');
      if (typeof v === 'bigint') refuse('a BigInt');
      if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return null;
      const proto = getPrototypeOf(v);
      if (proto === Object.prototype || proto === null) return null;
      refuse(describeObject(v));
    },
    decode: () => {
      throw new KeynodeError('ERR_BAD_MESSAGE', 'extension type 127 is never sent');
    },
  });
  return codec;
}

function registerValues(codec: ExtensionCodec): void {
  // Payloads of Map and Set are MessagePack arrays, encoded by an encoder of this same codec (msgpack's
  // encoders and decoders clone themselves when re-entered).
  const inner = { enc: undefined as Encoder | undefined, dec: undefined as Decoder | undefined };
  const enc = () => (inner.enc ??= new Encoder({ extensionCodec: codec }));
  const dec = () => (inner.dec ??= new Decoder({ extensionCodec: codec }));
  /** Maps and Sets being encoded right now: meeting one again is a cycle. */
  const open = new Set<object>();
  let decoding = 0;
  const nested = (v: object, items: unknown[]): Uint8Array => {
    if (open.has(v)) refuse('a cycle');
    if (open.size >= MAX_NESTING) refuse('too deep');
    open.add(v);
    try {
      return enc().encode(items);
    } finally {
      open.delete(v);
    }
  };
  const nestedDecode = (data: Uint8Array, what: string): unknown[] => {
    if (decoding >= MAX_NESTING) throw new KeynodeError('ERR_BAD_MESSAGE', `${what}s nest more than ${MAX_NESTING} deep`);
    decoding++;
    try {
      const items = dec().decode(data);
      if (!Array.isArray(items)) throw new KeynodeError('ERR_BAD_MESSAGE', `a ${what} extension does not hold an array`);
      return items;
    } finally {
      decoding--;
    }
  };
  codec.register({
    type: BIGINT_EXT,
    encode: (v: unknown) => (typeof v === 'bigint' ? bigintBytes(v) : null),
    decode: (data: Uint8Array) => bigintFrom(data),
  });
  codec.register({
    type: MAP_EXT,
    encode: (v: unknown) => {
      if (typeof v !== 'object' || v === null || getPrototypeOf(v) !== Map.prototype) return null;
      const items: unknown[] = [];
      mapForEach.call(v, (value: unknown, key: unknown) => items.push(key, value));
      return nested(v, items);
    },
    decode: (data: Uint8Array) => {
      const items = nestedDecode(data, 'Map');
      if (items.length % 2) throw new KeynodeError('ERR_BAD_MESSAGE', 'a Map extension holds an odd number of items');
      const m = new Map<unknown, unknown>();
      for (let i = 0; i < items.length; i += 2) m.set(items[i], items[i + 1]);
      return m;
    },
  });
  codec.register({
    type: SET_EXT,
    encode: (v: unknown) => {
      if (typeof v !== 'object' || v === null || getPrototypeOf(v) !== Set.prototype) return null;
      const items: unknown[] = [];
      setForEach.call(v, (value: unknown) => items.push(value));
      return nested(v, items);
    },
    decode: (data: Uint8Array) => new Set(nestedDecode(data, 'Set')),
  });
  codec.register({
    type: BINARY_EXT,
    encode: (v: unknown) => {
      if (typeof v !== 'object' || v === null) return null;
      const kind = binaryKind(v);
      if (kind === undefined || kind < 0) return null;
      if (!LITTLE_ENDIAN) refuse('a typed array on a big-endian machine');
      const bytes = kind === 0 ? new Uint8Array(v as ArrayBuffer) : new Uint8Array((v as ArrayBufferView).buffer, (v as ArrayBufferView).byteOffset, (v as ArrayBufferView).byteLength);
      const out = new Uint8Array(1 + bytes.length);
      out[0] = kind;
      out.set(bytes, 1);
      return out;
    },
    decode: (data: Uint8Array) => {
      const kind = BINARY_KINDS[data[0] ?? -1];
      if (!kind || !LITTLE_ENDIAN) throw new KeynodeError('ERR_BAD_MESSAGE', 'a binary extension of an unknown kind');
      const buffer = data.slice(1).buffer;
      if (kind === 'ArrayBuffer') return buffer;
      const Ctor = BINARY_CTORS[kind]!;
      const size = (Ctor as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1;
      if (buffer.byteLength % size) throw new KeynodeError('ERR_BAD_MESSAGE', `a ${kind} extension of ${buffer.byteLength} bytes`);
      return new Ctor(buffer);
    },
  });
}

function constructorName(v: object): string | undefined {
  try {
    const name = (getPrototypeOf(v) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    return typeof name === 'string' && name ? name.slice(0, 64) : undefined;
  } catch {
    return undefined;
  }
}

function describeObject(v: object): string {
  if (v instanceof Promise) return 'a Promise (did you forget an await?)';
  const name = constructorName(v);
  if (v instanceof Map || v instanceof Set) return `a ${v instanceof Map ? 'Map' : 'Set'} subclass (${name ?? 'anonymous'})`;
  return name ? `a class instance (${name})` : 'an object with a prototype';
}

const SENDABLE = 'send plain objects, arrays, strings, numbers, booleans, null, BigInt, Date, Map, Set, Uint8Array and other typed arrays, or node references';

/** What `what` (the encoder's verdict) means, said of the value at `path`. */
function verdict(path: string, what: string): string {
  switch (what) {
    case 'a cycle':
      return `${path} is an object that contains itself (a cycle): send a tree, with no object inside itself`;
    case 'too deep':
      return `${path} nests more than ${MAX_NESTING} levels deep`;
    case 'a function':
      return `${path} is a function: functions cannot be sent; ship code as the function of an at() call instead`;
    default:
      return `${path} is ${what}, which cannot be sent: ${SENDABLE}`;
  }
}

function keyPath(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/**
 * Walks a value the encoder refused, the way the encoder reads it, and names the first bad value by its path.
 * Only on the failure path: it reads the value again (getters run again), and gives up quietly on anything
 * odd, leaving the encoder's own message.
 */
function findRefusal(root: unknown, label: string, values: boolean): string | undefined {
  const ancestors: object[] = [];
  const paths: string[] = [];
  let steps = 0;
  const visit = (v: unknown, path: string): string | undefined => {
    if (++steps > 1_000_000) return undefined;
    if (v === null || v === undefined || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return undefined;
    if (typeof v === 'bigint') return values ? undefined : verdict(path, 'a BigInt');
    if (typeof v === 'function') return verdict(path, 'a function');
    if (typeof v === 'symbol') return verdict(path, 'a symbol');
    if (typeof v !== 'object') return undefined;
    const seen = ancestors.indexOf(v);
    if (seen >= 0) return `${path} is ${paths[seen]} again (a cycle): send a tree, with no object inside itself`;
    if (ancestors.length >= MAX_NESTING) return verdict(path, 'too deep');
    if (kNodeRef in v || v instanceof Date || ArrayBuffer.isView(v) || isArrayBuffer(v)) return undefined;
    ancestors.push(v);
    paths.push(path);
    try {
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          const r = visit(v[i], `${path}[${i}]`);
          if (r) return r;
        }
        return undefined;
      }
      const proto = getPrototypeOf(v);
      if (values && proto === Map.prototype) {
        let i = 0;
        let found: string | undefined;
        mapForEach.call(v, (value: unknown, key: unknown) => {
          const at = typeof key === 'string' || typeof key === 'number' ? `${path}.get(${JSON.stringify(key)})` : `${path}.get(<key ${i}>)`;
          found ??= visit(key, `${path} (key ${i})`) ?? visit(value, at);
          i++;
        });
        return found;
      }
      if (values && proto === Set.prototype) {
        let i = 0;
        let found: string | undefined;
        setForEach.call(v, (value: unknown) => {
          found ??= visit(value, `${path} (item ${i++})`);
        });
        return found;
      }
      if (proto !== Object.prototype && proto !== null) return verdict(path, describeObject(v));
      for (const key of Object.keys(v)) {
        const r = visit((v as Record<string, unknown>)[key], keyPath(path, key));
        if (r) return r;
      }
      return undefined;
    } finally {
      ancestors.pop();
      paths.pop();
    }
  };
  try {
    return visit(root, label);
  } catch {
    return undefined;
  }
}

/** The encoder's own messages, made readable. */
function explain(cause: unknown): string {
  const m = (cause as Error)?.message ?? String(cause);
  return /Too deep objects/.test(m) ? 'it nests more than 100 levels deep, or is cyclic' : m;
}

function encodeWith(encoder: Encoder, value: unknown, label: string, values: boolean): Uint8Array {
  try {
    return encoder.encode(value);
  } catch (cause) {
    if (cause instanceof KeynodeError) throw cause;
    const found = findRefusal(value, label, values);
    if (found) throw new KeynodeError('ERR_RESULT', found);
    if (cause instanceof Refused) throw new KeynodeError('ERR_RESULT', verdict(label, cause.message));
    if (cause instanceof RangeError) throw new KeynodeError('ERR_RESULT', `${label} nests too deeply to be sent`);
    throw new KeynodeError('ERR_RESULT', `${label} cannot be sent as MessagePack: ${explain(cause)}`);
  }
}

// Protocol messages encode with the value extensions (a capability's bound arguments are user values) but
// decode without them: envelopes from strangers never hold a Map, and their decoder's length caps must hold.
const extensionCodec = makeExtensionCodec(undefined, true);
const plainExtensions = makeExtensionCodec();
// Protocol maps drop undefined fields: an omitted option and an undefined one mean the same.
const encoder = new Encoder({ extensionCodec, ignoreUndefined: true });
const decoder = new Decoder({ extensionCodec: plainExtensions });

export function encode(value: unknown): Uint8Array {
  return encodeWith(encoder, value, 'value', true);
}

/** Decoding hostile bytes: any failure is ERR_BAD_MESSAGE, never an exception of another kind. */
export function decode(bytes: Uint8Array): unknown {
  try {
    return decoder.decode(bytes);
  } catch (cause) {
    if (cause instanceof KeynodeError) throw cause;
    throw new KeynodeError('ERR_BAD_MESSAGE', `malformed MessagePack: ${(cause as Error).message}`, { cause });
  }
}

// The fixstr "__proto__": a map with that own key encodes, but every peer's decoder refuses it.
const PROTO_KEY = Buffer.from([0xa9, ...Buffer.from('__proto__')]);

/**
 * The codec of user values (arguments, results, stored values), for a realm that wants its own NodeRef
 * objects (the worker hardens its own).
 */
export function makeCodec(makeRef: (url: string) => unknown): ValueCodec {
  const ext = makeExtensionCodec(makeRef, true);
  const enc = new Encoder({ extensionCodec: ext });
  const dec = new Decoder({ extensionCodec: ext });
  return {
    encode: (v, label = 'value') => {
      const quick = encodeScalar(v);
      if (quick) return quick;
      const bytes = encodeWith(enc, v, label, true);
      if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes(PROTO_KEY)) {
        try {
          dec.decode(bytes);
        } catch {
          throw new KeynodeError('ERR_RESULT', `${label} cannot be sent as MessagePack: an object has an own "__proto__" key`);
        }
      }
      return bytes;
    },
    decode: (b) => {
      const quick = decodeScalars(b);
      if (quick) return quick.v;
      try {
        return dec.decode(b);
      } catch (cause) {
        if (cause instanceof KeynodeError) throw cause;
        throw new KeynodeError('ERR_BAD_MESSAGE', `malformed MessagePack: ${(cause as Error).message}`);
      }
    },
  };
}

/** Header of a MessagePack array: element count and header length, or undefined if not an array. */
function arrayHeader(b: Uint8Array): { count: number; size: number } | undefined {
  const t = b[0];
  if (t === undefined) return undefined;
  if (t >= 0x90 && t <= 0x9f) return { count: t - 0x90, size: 1 };
  if (t === 0xdc && b.length >= 3) return { count: (b[1]! << 8) | b[2]!, size: 3 };
  if (t === 0xdd && b.length >= 5) return { count: ((b[1]! << 24) >>> 0) + ((b[2]! << 16) | (b[3]! << 8) | b[4]!), size: 5 };
  return undefined;
}

export function isMsgpackArray(b: Uint8Array): boolean {
  return arrayHeader(b) !== undefined;
}

/** The encoding of `[...a, ...b]` from the encodings of arrays `a` and `b`, without decoding either. */
export function concatArrays(a: Uint8Array, b: Uint8Array): Uint8Array {
  const ha = arrayHeader(a);
  const hb = arrayHeader(b);
  if (!ha || !hb) throw new KeynodeError('ERR_BAD_MESSAGE', 'arguments must be a MessagePack array');
  const count = ha.count + hb.count;
  const head = count < 16 ? Uint8Array.of(0x90 + count) : count < 0x10000 ? Uint8Array.of(0xdc, count >> 8, count & 0xff) : Uint8Array.of(0xdd, count >>> 24, (count >> 16) & 0xff, (count >> 8) & 0xff, count & 0xff);
  const out = new Uint8Array(head.length + a.length - ha.size + b.length - hb.size);
  out.set(head, 0);
  out.set(a.subarray(ha.size), head.length);
  out.set(b.subarray(hb.size), head.length + a.length - ha.size);
  return out;
}

/**
 * A decoder for bytes from strangers, with every container length capped: a declared length is refused
 * before anything is allocated for it, so a small body cannot make the container build a huge structure.
 */
export function strictDecoder(limits: { maxStrLength: number; maxBinLength: number; maxArrayLength: number; maxMapLength: number; maxExtLength: number }): (bytes: Uint8Array) => unknown {
  const d = new Decoder({ extensionCodec: plainExtensions, ...limits });
  return (bytes) => {
    try {
      return d.decode(bytes);
    } catch (cause) {
      if (cause instanceof KeynodeError) throw cause;
      throw new KeynodeError('ERR_BAD_MESSAGE', `malformed MessagePack: ${(cause as Error).message}`, { cause });
    }
  };
}
