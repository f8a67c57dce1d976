/**
 * @module protocol/codec
 * MessagePack with one extension: a node reference (ext type 1, payload = its URL), so handles passed as
 * arguments, returned as results or kept in refs arrive as node references, not as bare strings.
 */
import { Decoder, Encoder, ExtensionCodec } from '@msgpack/msgpack';
import { KeynodeError } from './errors.js';
import { parseNodeUrl, type NodeId } from './ids.js';

const kNodeRef = Symbol.for('keynode.noderef');
export const NODE_REF_EXT = 1;

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

export function makeExtensionCodec(makeRef: (url: string) => unknown = (url) => new NodeRef(url)): ExtensionCodec {
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
  // Registered last, it sees every object no other extension took: plain data passes (null: encode it as
  // usual); anything MessagePack would silently reshape (a Map as {}, a class instance as its fields, a
  // forgotten Promise as {}) is refused instead.
  codec.register({
    type: REFUSED_EXT,
    encode: (v: unknown) => {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return null;
      const proto = Object.getPrototypeOf(v);
      if (proto === Object.prototype || proto === null) return null;
      throw new KeynodeError('ERR_RESULT', `${describeObject(v)} cannot be sent as MessagePack: send plain objects, arrays, strings, numbers, booleans, null, Uint8Array, Date or node references`);
    },
    decode: () => {
      throw new KeynodeError('ERR_BAD_MESSAGE', 'extension type 127 is never sent');
    },
  });
  return codec;
}

const REFUSED_EXT = 127;

function describeObject(v: object): string {
  if (v instanceof Promise) return 'a Promise (did you forget an await?)';
  if (v instanceof Map) return 'a Map';
  if (v instanceof Set) return 'a Set';
  let name: unknown;
  try {
    name = (Object.getPrototypeOf(v) as { constructor?: { name?: unknown } })?.constructor?.name;
  } catch {
    name = undefined;
  }
  return typeof name === 'string' && name ? `an instance of ${name.slice(0, 64)}` : 'an object with a prototype';
}

const extensionCodec = makeExtensionCodec();
// Protocol maps drop undefined fields: an omitted option and an undefined one mean the same.
const encoder = new Encoder({ extensionCodec, ignoreUndefined: true });
const decoder = new Decoder({ extensionCodec });

/** The encoder's own messages, made readable. */
function explain(cause: unknown): string {
  const m = (cause as Error)?.message ?? String(cause);
  return /Too deep objects/.test(m) ? 'it nests more than 100 levels deep, or is cyclic' : m;
}

export function encode(value: unknown): Uint8Array {
  try {
    return encoder.encode(value);
  } catch (cause) {
    if (cause instanceof KeynodeError) throw cause;
    throw new KeynodeError('ERR_RESULT', `value cannot be sent as MessagePack: ${explain(cause)}`, { cause });
  }
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

/** Decoder/encoder pairs for a realm that wants its own NodeRef objects (the worker hardens its own). */
export function makeCodec(makeRef: (url: string) => unknown): { encode: (v: unknown) => Uint8Array; decode: (b: Uint8Array) => unknown } {
  const ext = makeExtensionCodec(makeRef);
  const enc = new Encoder({ extensionCodec: ext });
  const dec = new Decoder({ extensionCodec: ext });
  return {
    encode: (v) => {
      let bytes: Uint8Array;
      try {
        bytes = enc.encode(v);
      } catch (cause) {
        if (cause instanceof KeynodeError) throw cause;
        throw new KeynodeError('ERR_RESULT', `value cannot be sent as MessagePack: ${explain(cause)}`);
      }
      if (Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes(PROTO_KEY)) {
        try {
          dec.decode(bytes);
        } catch {
          throw new KeynodeError('ERR_RESULT', 'value cannot be sent as MessagePack: an object has an own "__proto__" key');
        }
      }
      return bytes;
    },
    decode: (b) => {
      try {
        return dec.decode(b);
      } catch (cause) {
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
  const d = new Decoder({ extensionCodec, ...limits });
  return (bytes) => {
    try {
      return d.decode(bytes);
    } catch (cause) {
      if (cause instanceof KeynodeError) throw cause;
      throw new KeynodeError('ERR_BAD_MESSAGE', `malformed MessagePack: ${(cause as Error).message}`, { cause });
    }
  };
}
