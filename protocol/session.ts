/**
 * @module protocol/session
 * Protocol v3 sessions. A principal sends one signed `hello` (a one-off envelope carrying an X25519 key); the
 * container answers, signed by its own key over the hello's signature, with its X25519 key and a session ID.
 * Both derive two HMAC-SHA256 keys (one per direction) from the X25519 secret. Afterwards a request is a
 * MessagePack array `[v, sid, n, type, to, body, extra, mac]`: `n` a per-session counter (a bounded window
 * of counters is accepted, each once), the MAC over every byte before it. Every reply carries an
 * authenticator in the `x-keynode-auth` header, bound to the request it answers: a MAC in the session, a
 * container signature for one-off messages. Sizes and domains are fixed here, and nothing here does I/O.
 */
import { createHash, createHmac, createPrivateKey, createPublicKey, createSecretKey, diffieHellman, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { Encoder } from '@msgpack/msgpack';
import { strictDecoder } from './codec.js';
import { KeynodeError } from './errors.js';
import { isNodeId, publicKeyFromId, type NodeId } from './ids.js';
import { verifyBytes } from './keys.js';
import { MESSAGE_TYPES, PROTOCOL_VERSION, type MessageType } from './messages.js';

export const SID_BYTES = 16;
export const MAC_BYTES = 32;
/** The reply header holding its authenticator (base64url): a 32-byte MAC or a 64-byte container signature. */
export const AUTH_HEADER = 'x-keynode-auth';
/** Counters a container accepts behind the highest it has seen (each once); clients keep fewer in flight. */
export const SESSION_WINDOW = 4096;
/** Longest call chain an eval may carry (nodes waiting on it, across containers). */
export const MAX_CHAIN = 64;

const te = new TextEncoder();
const D_REQUEST = te.encode('keynode/session-request/3\n');
const D_REPLY = te.encode('keynode/session-reply/3\n');
const D_ONE_OFF_REPLY = te.encode('keynode/reply/3\n');
const D_NO_SESSION = te.encode('keynode/no-session/3\n');
const D_SPEAKS_FOR = te.encode('keynode/speaks-for/3\n');
const D_TIME = te.encode('keynode/time/3\n');
const D_KEYS = te.encode('keynode/session-keys/3\n');
const plain = new Encoder();
// A frame is one array of scalars and byte strings, plus `extra`: a map of two fields at most.
const decodeFrame = strictDecoder({ maxStrLength: 256, maxBinLength: 2 ** 31 - 1, maxArrayLength: 8, maxMapLength: 4, maxExtLength: 0 });
/** A bin8 header for 32 bytes: how every frame ends, before the MAC itself. */
const MAC_TRAILER = Uint8Array.of(0xc4, MAC_BYTES);
const FRAME_HEADER = 0x98;

function concat(...parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

// The same few functions are sent again and again (as new function objects): their hashes are remembered.
const hashes = new Map<string, string>();
const MAX_HASHED = 1024;
const MAX_HASHED_SOURCE = 4096;

/** SHA-256 of a function's source, as lowercase hex: the name code travels under after the first time. */
export function codeHash(source: string): string {
  let h = hashes.get(source);
  if (h !== undefined) return h;
  h = createHash('sha256').update(source, 'utf8').digest('hex');
  if (source.length <= MAX_HASHED_SOURCE) {
    if (hashes.size >= MAX_HASHED) hashes.delete(hashes.keys().next().value!);
    hashes.set(source, h);
  }
  return h;
}

// --- key agreement ----------------------------------------------------------------------------------

export interface X25519Pair {
  privateKey: KeyObject;
  publicKey: Uint8Array;
}

/** A fresh X25519 key pair, made through JWK like Ed25519 keys (see keys.ts for why not generateKeyPairSync). */
export function x25519Pair(): X25519Pair {
  const d = randomBytes(32).toString('base64url');
  const privateKey = createPrivateKey({ format: 'jwk', key: { kty: 'OKP', crv: 'X25519', d, x: '' } });
  const x = createPublicKey(privateKey).export({ format: 'jwk' }).x!;
  return { privateKey, publicKey: new Uint8Array(Buffer.from(x, 'base64url')) };
}

/** The X25519 secret; a key of the wrong size or a low-order point (an all-zero secret) is a bad message. */
export function x25519Secret(own: KeyObject, peer: Uint8Array): Uint8Array {
  if (!(peer instanceof Uint8Array) || peer.length !== 32) throw new KeynodeError('ERR_BAD_MESSAGE', 'an X25519 public key is 32 bytes');
  let secret: Buffer;
  try {
    const key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'X25519', x: b64url(peer) } });
    secret = diffieHellman({ privateKey: own, publicKey: key });
  } catch {
    throw new KeynodeError('ERR_BAD_MESSAGE', 'the X25519 public key is not usable (a low-order point?)');
  }
  if (secret.every((b) => b === 0)) throw new KeynodeError('ERR_BAD_MESSAGE', 'the X25519 public key is a low-order point');
  return new Uint8Array(secret);
}

export interface SessionKeys {
  /** MACs requests (principal → container). */
  request: KeyObject;
  /** MACs replies (container → principal). */
  reply: KeyObject;
}

/**
 * The two MAC keys, bound to everything the handshake named: the session ID, both parties and both X25519
 * keys. A key agreed with one container never verifies at another, whose ID differs.
 */
export function sessionKeys(secret: Uint8Array, sid: Uint8Array, principal: NodeId, containerId: NodeId, clientKey: Uint8Array, containerKey: Uint8Array): SessionKeys {
  const info = concat(D_KEYS, plain.encode([principal, containerId, clientKey, containerKey]));
  const okm = new Uint8Array(hkdfSync('sha256', secret, sid, info, 64));
  return { request: createSecretKey(okm.subarray(0, 32)), reply: createSecretKey(okm.subarray(32, 64)) };
}

// --- hello ------------------------------------------------------------------------------------------

/** What a container answers to a hello (inside a reply it signs, bound to the hello's signature). */
export interface HelloReply {
  sid: Uint8Array;
  /** The container's X25519 key for this session. */
  epk: Uint8Array;
  /** The container's clock when it answered (ms since the epoch). */
  time: number;
  /** The session ends this long after it began; the client opens another before then. */
  ttlMs: number;
  /** Counters accepted behind the highest seen. */
  window: number;
  /** The container's X25519 key that private keys are sealed to (nacl box). */
  boxKey: Uint8Array;
  /** Largest request body the container reads. */
  maxBodyBytes: number;
}

export function checkHelloReply(v: unknown): HelloReply {
  const r = v as Partial<HelloReply> | null;
  const bytes = (x: unknown, n: number) => x instanceof Uint8Array && x.length === n;
  const int = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x > 0;
  if (typeof r !== 'object' || r === null || !bytes(r.sid, SID_BYTES) || !bytes(r.epk, 32) || !bytes(r.boxKey, 32) || !int(r.time) || !int(r.ttlMs) || !int(r.window) || !int(r.maxBodyBytes)) {
    throw new KeynodeError('ERR_BAD_REPLY', 'the container answered the hello with a malformed session');
  }
  return r as HelloReply;
}

// --- requests in a session --------------------------------------------------------------------------

/** Optional fields of a session request: the principal it is sent as, with its proof (see speaksFor). */
export interface FrameExtra {
  as?: NodeId;
  proof?: Uint8Array;
}

export interface SessionFrame {
  sid: Uint8Array;
  n: number;
  type: MessageType;
  to: NodeId;
  bodyBytes: Uint8Array;
  extra: FrameExtra | undefined;
  mac: Uint8Array;
  /** The bytes the MAC covers (all of the frame but the MAC). */
  covered: Uint8Array;
}

/** Builds a MACed session request; returns its bytes and its MAC (replies are bound to it). */
export function sealFrame(key: KeyObject, sid: Uint8Array, n: number, type: MessageType, to: NodeId, bodyBytes: Uint8Array, extra?: FrameExtra): { bytes: Uint8Array; mac: Uint8Array } {
  const head = plain.encode([PROTOCOL_VERSION, sid, n, type, to, bodyBytes, extra ?? null]);
  const out = new Uint8Array(head.length + MAC_TRAILER.length + MAC_BYTES);
  out.set(head, 0);
  out[0] = FRAME_HEADER; // eight elements: the MAC follows
  const mac = createHmac('sha256', key).update(D_REQUEST).update(out.subarray(0, head.length)).digest();
  out.set(MAC_TRAILER, head.length);
  out.set(mac, head.length + MAC_TRAILER.length);
  return { bytes: out, mac: new Uint8Array(mac) };
}

/** True for bytes that can only be a session request (an array), not a one-off envelope (a map). */
export function isSessionFrame(bytes: Uint8Array): boolean {
  return bytes[0] === FRAME_HEADER;
}

function bad(what: string): never {
  throw new KeynodeError('ERR_BAD_MESSAGE', `malformed session request: ${what}`);
}

/** Parses a session request, checking every type; does not check the MAC. */
export function parseFrame(bytes: Uint8Array): SessionFrame {
  const end = bytes.length - MAC_BYTES - MAC_TRAILER.length;
  if (!isSessionFrame(bytes) || end < 1 || bytes[end] !== MAC_TRAILER[0] || bytes[end + 1] !== MAC_TRAILER[1]) bad('not [v, sid, n, type, to, body, extra, mac]');
  const raw = decodeFrame(bytes) as unknown[];
  if (!Array.isArray(raw) || raw.length !== 8) bad('not [v, sid, n, type, to, body, extra, mac]');
  const [v, sid, n, type, to, body, extra, mac] = raw;
  if (typeof v !== 'number') bad('`v` must be a number');
  if (v !== PROTOCOL_VERSION) throw new KeynodeError('ERR_BAD_VERSION', `protocol version ${String(v)} is not supported; this container speaks ${PROTOCOL_VERSION}`);
  if (!(sid instanceof Uint8Array) || sid.length !== SID_BYTES) bad(`the session ID must be ${SID_BYTES} bytes`);
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) bad('the counter must be a positive integer');
  if (typeof type !== 'string' || !MESSAGE_TYPES.has(type) || type === 'hello') bad('`type` must be a message type (a hello is never sent in a session)');
  if (!isNodeId(to)) bad('`to` must be a node ID');
  if (!(body instanceof Uint8Array)) bad('`body` must be bytes');
  let ex: FrameExtra | undefined;
  if (extra !== null) {
    if (typeof extra !== 'object' || Array.isArray(extra) || extra instanceof Uint8Array) bad('`extra` must be a map or nil');
    const { as, proof, ...rest } = extra as Record<string, unknown>;
    if (Object.keys(rest).length) bad('`extra` holds only `as` and `proof`');
    if (as !== undefined && !isNodeId(as)) bad('`as` must be a node ID');
    if (proof !== undefined && (!(proof instanceof Uint8Array) || proof.length !== 64 || as === undefined)) bad('`proof` is a 64-byte signature by `as`');
    ex = { ...(as !== undefined ? { as: as as NodeId } : {}), ...(proof !== undefined ? { proof: proof as Uint8Array } : {}) };
  }
  return { sid, n, type: type as MessageType, to: to as NodeId, bodyBytes: body, extra: ex, mac: mac as Uint8Array, covered: bytes.subarray(0, end) };
}

export function frameMacValid(key: KeyObject, frame: SessionFrame): boolean {
  const expected = createHmac('sha256', key).update(D_REQUEST).update(frame.covered).digest();
  return timingSafeEqual(expected, frame.mac);
}

// --- speaking for another principal -----------------------------------------------------------------

/**
 * What `as` signs so that the session's principal (a container calling for its node) may send as it in this
 * session only. A signature bound to the session ID cannot be carried into another session.
 */
export function speaksForMessage(sid: Uint8Array, principal: NodeId, containerId: NodeId, as: NodeId): Uint8Array {
  return concat(D_SPEAKS_FOR, plain.encode([sid, principal, containerId, as]));
}

export function verifySpeaksFor(sid: Uint8Array, principal: NodeId, containerId: NodeId, as: NodeId, proof: Uint8Array): boolean {
  return verifyBytes(publicKeyFromId(as), as, speaksForMessage(sid, principal, containerId, as), proof);
}

// --- reply authenticators ---------------------------------------------------------------------------

/** The MAC of a reply in a session, bound to the MAC of the request it answers. */
export function replyMac(key: KeyObject, requestMac: Uint8Array, body: Uint8Array): string {
  return createHmac('sha256', key).update(D_REPLY).update(requestMac).update(body).digest('base64url');
}

/**
 * An authenticator's bytes, only from their one canonical base64url spelling: base64 leaves spare bits in its
 * last character, and a header changed there must not pass for the original.
 */
function authBytes(auth: string, size: number): Buffer | undefined {
  const bytes = Buffer.from(auth, 'base64url');
  return bytes.length === size && bytes.toString('base64url') === auth ? bytes : undefined;
}

export function replyMacValid(key: KeyObject, requestMac: Uint8Array, body: Uint8Array, auth: string): boolean {
  const got = authBytes(auth, MAC_BYTES);
  if (!got) return false;
  return timingSafeEqual(createHmac('sha256', key).update(D_REPLY).update(requestMac).update(body).digest(), got);
}

/** What a container signs for a reply to a one-off message: the request's signature and the reply's bytes. */
export function oneOffReplyMessage(requestSig: Uint8Array, body: Uint8Array): Uint8Array {
  return concat(D_ONE_OFF_REPLY, requestSig, body);
}

/** What a container signs when a session request names a session it does not have: nothing of it ran. */
export function noSessionMessage(requestMac: Uint8Array, body: Uint8Array): Uint8Array {
  return concat(D_NO_SESSION, requestMac, body);
}

export function signedBy(containerId: NodeId, message: Uint8Array, auth: string): boolean {
  const sig = authBytes(auth, 64);
  return sig !== undefined && verifyBytes(publicKeyFromId(containerId), containerId, message, new Uint8Array(sig));
}

/**
 * What a container signs to tell its clock to whoever sent `challenge` (GET /.well-known/keynode?challenge=):
 * its time, when it started (messages signed before that are refused) and the skew window it accepts.
 */
export function timeMessage(containerId: NodeId, challenge: Uint8Array, time: number, boot: number, skewMs: number): Uint8Array {
  return concat(D_TIME, plain.encode([containerId, challenge, time, boot, skewMs]));
}

export { b64url };
