/**
 * @module protocol/envelope
 * Signed envelopes `{ v, type, from, to, at, ts, nonce, body, sig }`: `at` is the container the message is
 * for, so an envelope accepted by one container is refused by every other (a node may have the same key on two). The body travels as MessagePack bytes
 * inside the envelope, and the signature covers a domain tag plus the encoding of every other field, so a
 * verifier never re-encodes the body and two encoders can never disagree on what was signed.
 */
import { randomBytes } from 'node:crypto';
import { Encoder } from '@msgpack/msgpack';
import { encode, strictDecoder } from './codec.js';
import { KeynodeError } from './errors.js';
import { isNodeId, publicKeyFromId, type NodeId } from './ids.js';
import { MESSAGE_TYPES, PROTOCOL_VERSION, type Bodies, type Envelope, type MessageType } from './messages.js';
import { verifyBytes, verifyBytesAsync } from './keys.js';

const DOMAIN = new TextEncoder().encode('keynode/envelope/1\n');
// An envelope is one small map of scalars and two byte strings; nothing else is worth decoding.
const decodeEnvelope = strictDecoder({ maxStrLength: 256, maxBinLength: 2 ** 31 - 1, maxArrayLength: 0, maxMapLength: 16, maxExtLength: 0 });
// Bodies hold policies and lists (ACLs, contacts, spawn keys, renewals): bounded, but not tiny.
const decodeBody = strictDecoder({ maxStrLength: 16 * 1024 * 1024, maxBinLength: 2 ** 31 - 1, maxArrayLength: 100_000, maxMapLength: 1024, maxExtLength: 4096 });
const plain = new Encoder();

export interface Signer {
  readonly id: NodeId;
  sign(message: Uint8Array): Uint8Array;
}

function signingInput(v: number, type: string, from: string, to: string, at: string, ts: number, nonce: Uint8Array, body: Uint8Array): Uint8Array {
  const fields = plain.encode([v, type, from, to, at, ts, nonce, body]);
  const out = new Uint8Array(DOMAIN.length + fields.length);
  out.set(DOMAIN, 0);
  out.set(fields, DOMAIN.length);
  return out;
}

/**
 * Builds and signs an envelope; returns its wire bytes. `at` is the target container's ID; a container
 * message (`to` is the container) may leave it out.
 */
export function sealEnvelope<T extends MessageType>(signer: Signer, type: T, to: NodeId, body: Bodies[T], ts = Date.now(), at: NodeId = to): Uint8Array {
  return signEnvelope(signer, type, to, body, ts, at).bytes;
}

/** `sealEnvelope`, also returning the signature: the container's signed reply is bound to it. */
export function signEnvelope<T extends MessageType>(signer: Signer, type: T, to: NodeId, body: Bodies[T], ts = Date.now(), at: NodeId = to): { bytes: Uint8Array; sig: Uint8Array } {
  const nonce = new Uint8Array(randomBytes(16));
  const bodyBytes = encode(body);
  const sig = signer.sign(signingInput(PROTOCOL_VERSION, type, signer.id, to, at, ts, nonce, bodyBytes));
  return { bytes: encode({ v: PROTOCOL_VERSION, type, from: signer.id, to, at, ts, nonce, body: bodyBytes, sig }), sig };
}

/** Envelope fields before the signature is checked. */
export interface UnverifiedEnvelope {
  v: number;
  type: MessageType;
  from: NodeId;
  to: NodeId;
  /** The container the message is for. */
  at: NodeId;
  ts: number;
  nonce: Uint8Array;
  bodyBytes: Uint8Array;
  sig: Uint8Array;
}

function field(cond: boolean, what: string): void {
  if (!cond) throw new KeynodeError('ERR_BAD_MESSAGE', `malformed envelope: ${what}`);
}

/** Parses wire bytes into envelope fields, checking every type; does not verify the signature. */
export function parseEnvelope(bytes: Uint8Array): UnverifiedEnvelope {
  const raw = decodeEnvelope(bytes) as Record<string, unknown>;
  field(typeof raw === 'object' && raw !== null && !Array.isArray(raw), 'not a map');
  const { v, type, from, to, at, ts, nonce, body, sig } = raw;
  field(typeof v === 'number', '`v` must be a number');
  if (v !== PROTOCOL_VERSION) throw new KeynodeError('ERR_BAD_VERSION', `protocol version ${String(v)} is not supported; this container speaks ${PROTOCOL_VERSION}`);
  field(typeof type === 'string' && MESSAGE_TYPES.has(type), '`type` must be one of ' + [...MESSAGE_TYPES].join(', '));
  field(isNodeId(from), '`from` must be a node ID');
  field(isNodeId(to), '`to` must be a node ID');
  field(isNodeId(at), '`at` must be the ID of the container the message is for');
  field(typeof ts === 'number' && Number.isSafeInteger(ts) && ts > 0, '`ts` must be milliseconds since the epoch');
  field(nonce instanceof Uint8Array && nonce.length >= 8 && nonce.length <= 32, '`nonce` must be 8 to 32 bytes');
  field(body instanceof Uint8Array, '`body` must be bytes');
  field(sig instanceof Uint8Array && sig.length === 64, '`sig` must be a 64-byte Ed25519 signature');
  return { v, type: type as MessageType, from: from as NodeId, to: to as NodeId, at: at as NodeId, ts: ts as number, nonce: nonce as Uint8Array, bodyBytes: body as Uint8Array, sig: sig as Uint8Array };
}

export function verifyEnvelope(e: UnverifiedEnvelope): boolean {
  return verifyBytes(publicKeyFromId(e.from), e.from, signingInput(e.v, e.type, e.from, e.to, e.at, e.ts, e.nonce, e.bodyBytes), e.sig);
}

/** `verifyEnvelope` off the event loop (see verifyBytesAsync). */
export function verifyEnvelopeAsync(e: UnverifiedEnvelope): Promise<boolean> {
  return verifyBytesAsync(publicKeyFromId(e.from), e.from, signingInput(e.v, e.type, e.from, e.to, e.at, e.ts, e.nonce, e.bodyBytes), e.sig);
}

/** A body's bytes as a map, once their authenticator has been checked (a signature, or a session's MAC). */
export function decodeBodyMap<T extends MessageType>(bytes: Uint8Array): Bodies[T] {
  const body = decodeBody(bytes);
  field(typeof body === 'object' && body !== null && !Array.isArray(body) && !(body instanceof Uint8Array), '`body` must be a map');
  return body as Bodies[T];
}

/** Decodes the body once the signature has been verified. Shape checks belong to each handler. */
export function openBody<T extends MessageType>(e: UnverifiedEnvelope & { type: T }): Envelope<T> {
  const body = decodeBody(e.bodyBytes);
  field(typeof body === 'object' && body !== null && !Array.isArray(body), '`body` must be a map');
  return { v: e.v, type: e.type, from: e.from, to: e.to, at: e.at, ts: e.ts, nonce: e.nonce, body: body as Bodies[T] };
}
