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
    encode: (v: unknown) => (isNodeRefLike(v) ? textEncoder.encode(v.url) : null),
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
  return codec;
}

const extensionCodec = makeExtensionCodec();
// Protocol maps drop undefined fields: an omitted option and an undefined one mean the same.
const encoder = new Encoder({ extensionCodec, ignoreUndefined: true });
const decoder = new Decoder({ extensionCodec });

export function encode(value: unknown): Uint8Array {
  try {
    return encoder.encode(value);
  } catch (cause) {
    throw new KeynodeError('ERR_RESULT', `value cannot be sent as MessagePack: ${(cause as Error).message}`, { cause });
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

/** Decoder/encoder pairs for a realm that wants its own NodeRef objects (the worker hardens its own). */
export function makeCodec(makeRef: (url: string) => unknown): { encode: (v: unknown) => Uint8Array; decode: (b: Uint8Array) => unknown } {
  const ext = makeExtensionCodec(makeRef);
  const enc = new Encoder({ extensionCodec: ext });
  const dec = new Decoder({ extensionCodec: ext });
  return {
    encode: (v) => {
      try {
        return enc.encode(v);
      } catch (cause) {
        throw new KeynodeError('ERR_RESULT', `value cannot be sent as MessagePack: ${(cause as Error).message}`);
      }
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
