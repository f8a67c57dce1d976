/**
 * @module client/session
 * The sending side of protocol v3 with one container, over any transport (the client library's undici pool,
 * or a container calling its peers): the container's ID and authenticated clock, the session (opened with a
 * signed hello, reopened before it expires or when the container says it no longer has it), counters kept
 * inside the container's window, and the check of every reply's authenticator. A reply that is not
 * authenticated by the container this channel was opened with is refused with ERR_BAD_REPLY; nothing is
 * ever sent again as a one-off message because a session failed.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import {
  b64url, checkHelloReply, decode, encode, isNodeId, KeynodeError, noSessionMessage, oneOffReplyMessage, PROTOCOL_VERSION, replyMacValid,
  sealFrame, sessionKeys, signedBy, signEnvelope, speaksForMessage, timeMessage, x25519Pair, x25519Secret,
  type Bodies, type MessageType, type NodeId, type Reply, type SessionKeys, type Signer, type WireError,
} from '../protocol/index.js';

/** What came back for a POST: its status, its bytes, and the authenticator header if any. */
export interface Exchange {
  status: number;
  body: Uint8Array;
  auth: string | undefined;
}

export interface SendOptions {
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
  /** Whom the request is for, for a transport that shares its sockets fairly (a container calling its peers). */
  tenant?: string | undefined;
  /** When the caller stops waiting (ms since the epoch): every request the call makes ends by then. */
  deadline?: number | undefined;
}

export interface Transport {
  post(path: string, bytes: Uint8Array, options: SendOptions): Promise<Exchange>;
  /** A GET whose body is JSON (the container's /.well-known/keynode), bounded by the transport. */
  get(path: string, options: SendOptions): Promise<{ status: number; text: string }>;
}

/** What a container says of itself at /.well-known/keynode. */
export interface ContainerInfo {
  containerId: NodeId;
  url: string;
  v: number;
  time: number;
  boot?: number;
  skewMs?: number;
  proof?: string;
  boxKey?: string;
  holdGraceMs?: number;
}

export interface ChannelOptions {
  origin: string;
  identity: Signer;
  transport: Transport;
  /** Refuse a container whose ID is not this one (pinning; without TLS the first answer is otherwise trusted). */
  containerId?: NodeId | undefined;
  /** The most the container's clock may differ from ours before we refuse it (default 10 minutes). */
  maxClockOffsetMs?: number | undefined;
}

/** One in-flight slot per counter, and fewer than the container's window in flight at once. */
interface Live {
  sid: Uint8Array;
  keys: SessionKeys;
  next: number;
  /** When this client opens the next session (before the container ends this one). */
  renewAt: number;
  limit: number;
  inFlight: number;
  waiting: (() => void)[];
  maxBodyBytes: number;
  boxKey: Uint8Array;
  /** Proofs that this session's principal speaks for a node, signed once per session and node. */
  proofs: Map<NodeId, Uint8Array>;
}

const NO_SESSION = Symbol('no session');
const MAX_PROOFS = 4096;
const MAX_KNOWN_CODE = 4096;
const MAX_INFO_BYTES = 64 * 1024;

function claimedError(ex: Exchange): WireError | undefined {
  try {
    const r = decode(ex.body) as Reply;
    if (r && r.ok === false && typeof r.error?.code === 'string') return r.error;
  } catch {
    // not even MessagePack
  }
  return undefined;
}

/** A reply without a valid authenticator: refused, with what it claimed for whoever debugs it. */
export function unauthenticated(origin: string, ex: Exchange, why = 'without authenticating it'): KeynodeError {
  const c = claimedError(ex);
  const err = new KeynodeError('ERR_BAD_REPLY', `${origin} answered (HTTP ${ex.status}) ${why}${c ? `; the reply claims ${String(c.code)}: ${String(c.message).slice(0, 300)}` : ''}. A reply the container did not authenticate is not trusted`);
  if (c) Object.defineProperty(err, 'claimed', { value: String(c.code), enumerable: true });
  return err;
}

function opened(ex: Exchange, origin: string): unknown {
  let reply: Reply;
  try {
    reply = decode(ex.body) as Reply;
  } catch {
    throw new KeynodeError('ERR_BAD_REPLY', `${origin} authenticated a reply that is not MessagePack`);
  }
  if (typeof reply !== 'object' || reply === null || typeof reply.ok !== 'boolean') throw new KeynodeError('ERR_BAD_REPLY', `${origin} did not answer as a keynode container`);
  if (reply.ok) return reply.value;
  throw KeynodeError.fromWire(reply.error);
}

export class SessionChannel {
  readonly origin: string;
  readonly containerId: NodeId;
  readonly identity: Signer;
  readonly info: ContainerInfo;
  readonly #transport: Transport;
  readonly #maxOffsetMs: number;
  /** Milliseconds to add to our clock for the container's, learned only from replies it signed. */
  #offset = 0;
  #live: Promise<Live> | undefined;
  /** Hashes of functions this container has from us (it answers ERR_UNKNOWN_CODE once it forgets one). */
  readonly #code = new Set<string>();
  /** Sessions opened so far (tests and metrics). */
  handshakes = 0;

  private constructor(options: ChannelOptions, info: ContainerInfo) {
    this.origin = options.origin;
    this.identity = options.identity;
    this.#transport = options.transport;
    this.#maxOffsetMs = options.maxClockOffsetMs ?? 10 * 60_000;
    this.info = info;
    this.containerId = info.containerId;
  }

  /**
   * Asks the container at `origin` who it is and what time it is, with a fresh challenge it must sign: the
   * clock offset comes only from a signed answer, and a container that is not `options.containerId` (when
   * given) or speaks another protocol version is refused before anything is sent to it.
   */
  static async discover(options: ChannelOptions, send: SendOptions = {}): Promise<SessionChannel> {
    const challenge = new Uint8Array(randomBytes(16));
    const sentAt = Date.now();
    const info = await fetchInfo(options, challenge, send);
    const channel = new SessionChannel(options, info);
    channel.#learnTime(info, challenge, sentAt, Date.now());
    return channel;
  }

  /** The container's clock, as far as it has told us (signed). */
  now(): number {
    return Date.now() + this.#offset;
  }

  get offset(): number {
    return this.#offset;
  }

  #learnTime(info: ContainerInfo, challenge: Uint8Array, sentAt: number, receivedAt: number): void {
    const { time, boot, skewMs, proof } = info;
    if (typeof time !== 'number' || typeof boot !== 'number' || typeof skewMs !== 'number' || typeof proof !== 'string' || !signedBy(this.containerId, timeMessage(this.containerId, challenge, time, boot, skewMs), proof)) {
      throw new KeynodeError('ERR_BAD_REPLY', `${this.origin} did not sign its clock with the key of ${this.containerId}`);
    }
    this.#setOffset(time, sentAt, receivedAt);
  }

  #setOffset(time: number, sentAt: number, receivedAt: number): void {
    const offset = time - Math.round((sentAt + receivedAt) / 2);
    if (Math.abs(offset) > this.#maxOffsetMs) {
      throw new KeynodeError('ERR_CLOCK_SKEW', `the clock of ${this.origin} is ${offset} ms from ours, more than the ${this.#maxOffsetMs} ms this client accepts (maxClockOffsetMs)`);
    }
    // Within a second our own clock is a better guess than an estimate from one round trip.
    this.#offset = Math.abs(offset) > 1000 ? offset : 0;
  }

  /**
   * After an unauthenticated ERR_CLOCK_SKEW: asks for the signed time, and says whether `ts` really was
   * outside the container's window (then nothing ran, and signing again is safe).
   */
  async #skewConfirmed(ts: number, send: SendOptions): Promise<boolean> {
    const challenge = new Uint8Array(randomBytes(16));
    const sentAt = Date.now();
    const info = await fetchInfo({ origin: this.origin, identity: this.identity, transport: this.#transport, containerId: this.containerId }, challenge, send);
    this.#learnTime(info, challenge, sentAt, Date.now());
    return Math.abs(ts - this.now()) > (info.skewMs ?? 0) - 1000 || ts < (info.boot ?? 0);
  }

  // --- sessions --------------------------------------------------------------------------------------

  #session(send: SendOptions): Promise<Live> {
    const current = this.#live;
    if (current) {
      return current.then((live) => {
        if (Date.now() < live.renewAt) return live;
        if (this.#live === current) this.#live = undefined;
        return this.#session(send);
      });
    }
    const next = this.#hello(send);
    this.#live = next;
    next.catch(() => {
      if (this.#live === next) this.#live = undefined;
    });
    return next;
  }

  async #hello(send: SendOptions): Promise<Live> {
    const pair = x25519Pair();
    for (let attempt = 0; ; attempt++) {
      const ts = this.now();
      const sentAt = Date.now();
      const { bytes, sig } = signEnvelope(this.identity, 'hello', this.containerId, { epk: pair.publicKey }, ts, this.containerId);
      const ex = await this.#transport.post('/', bytes, send);
      if (ex.auth === undefined) {
        const c = claimedError(ex);
        if (attempt === 0 && c?.code === 'ERR_CLOCK_SKEW' && (await this.#skewConfirmed(ts, send))) continue;
        // A hello changes nothing whatever its answer, so a refusal is reported by its code; it is never a
        // reason to send anything outside a session.
        if (c && typeof c.code === 'string') throw new KeynodeError(KeynodeError.fromWire(c).code, `${String(c.message).slice(0, 500)} (${this.origin} did not authenticate this refusal of a session)`);
        throw unauthenticated(this.origin, ex);
      }
      if (!signedBy(this.containerId, oneOffReplyMessage(sig, ex.body), ex.auth)) throw unauthenticated(this.origin, ex, `to a hello with a signature that is not by ${this.containerId}`);
      const hello = checkHelloReply(opened(ex, this.origin));
      const receivedAt = Date.now();
      this.#setOffset(hello.time, sentAt, receivedAt);
      const keys = sessionKeys(x25519Secret(pair.privateKey, hello.epk), hello.sid, this.identity.id, this.containerId, pair.publicKey, hello.epk);
      this.handshakes++;
      return {
        sid: hello.sid,
        keys,
        next: 1,
        renewAt: receivedAt + hello.ttlMs - Math.min(60_000, Math.floor(hello.ttlMs / 10)),
        limit: Math.max(1, Math.floor(hello.window / 2)),
        inFlight: 0,
        waiting: [],
        maxBodyBytes: hello.maxBodyBytes,
        boxKey: hello.boxKey,
        proofs: new Map(),
      };
    }
  }

  /** The container's key for sealing private keys to it (from the signed hello). */
  async boxKey(send: SendOptions = {}): Promise<Uint8Array> {
    return (await this.#session(send)).boxKey;
  }

  /** Forgets the session (tests; a client that wants a new one). */
  reset(): void {
    this.#live = undefined;
  }

  async #slot(live: Live): Promise<void> {
    while (live.inFlight >= live.limit) await new Promise<void>((r) => live.waiting.push(r));
    live.inFlight++;
  }

  #free(live: Live): void {
    live.inFlight--;
    live.waiting.shift()?.();
  }

  #proof(live: Live, as: Signer): Uint8Array {
    let proof = live.proofs.get(as.id);
    if (!proof) {
      proof = as.sign(speaksForMessage(live.sid, this.identity.id, this.containerId, as.id));
      if (live.proofs.size >= MAX_PROOFS) live.proofs.delete(live.proofs.keys().next().value!);
      live.proofs.set(as.id, proof);
    }
    return proof;
  }

  /**
   * Sends a message in the session (opening one if needed) and returns the reply's value, or throws its
   * error. `as`: a principal this session's principal speaks for (a container calling for its node): its
   * signature over the session is made once and sent with each request.
   */
  async request<T extends MessageType>(type: T, to: NodeId, body: Bodies[T], options: SendOptions & { as?: Signer } = {}): Promise<unknown> {
    const bodyBytes = encode(body);
    const path = type === 'eval' || type === 'destroy' ? `/${to}` : '/';
    for (let attempt = 0; ; attempt++) {
      const live = await this.#session(options);
      await this.#slot(live);
      let ex: Exchange;
      let mac: Uint8Array;
      try {
        const extra = options.as && options.as.id !== this.identity.id ? { as: options.as.id, proof: this.#proof(live, options.as) } : undefined;
        const frame = sealFrame(live.keys.request, live.sid, live.next++, type, to, bodyBytes, extra);
        if (frame.bytes.length > live.maxBodyBytes) throw new KeynodeError('ERR_TOO_LARGE', `the message is ${frame.bytes.length} bytes; ${this.origin} reads at most ${live.maxBodyBytes}`);
        mac = frame.mac;
        ex = await this.#transport.post(path, frame.bytes, options);
      } finally {
        this.#free(live);
      }
      const value = this.#check(live, mac, ex);
      if (value !== NO_SESSION) return value;
      // Signed by the container: it did not have this session when the request arrived, so nothing ran.
      if (this.#live && (await this.#live.catch(() => undefined)) === live) this.#live = undefined;
      if (attempt > 0) throw new KeynodeError('ERR_NO_SESSION', `${this.origin} refused a session it had just opened`);
    }
  }

  #check(live: Live, mac: Uint8Array, ex: Exchange): unknown {
    if (ex.auth === undefined) throw unauthenticated(this.origin, ex);
    const size = Buffer.byteLength(ex.auth, 'base64url');
    if (size === 32) {
      if (!replyMacValid(live.keys.reply, mac, ex.body, ex.auth)) throw unauthenticated(this.origin, ex, 'with a MAC that does not verify in this session');
      return opened(ex, this.origin);
    }
    if (size === 64 && signedBy(this.containerId, noSessionMessage(mac, ex.body), ex.auth) && claimedError(ex)?.code === 'ERR_NO_SESSION') return NO_SESSION;
    throw unauthenticated(this.origin, ex, 'with an authenticator that does not verify');
  }

  /**
   * A fully signed one-off message (no session), for rare calls signed by another key (a node's own, for its
   * destroy). Its reply must be signed by the container, over this message's signature.
   */
  async oneOff<T extends MessageType>(signer: Signer, type: T, to: NodeId, body: Bodies[T], send: SendOptions = {}): Promise<unknown> {
    const path = type === 'eval' || type === 'destroy' ? `/${to}` : '/';
    for (let attempt = 0; ; attempt++) {
      const ts = this.now();
      const { bytes, sig } = signEnvelope(signer, type, to, body, ts, this.containerId);
      const ex = await this.#transport.post(path, bytes, send);
      if (ex.auth === undefined) {
        if (attempt === 0 && claimedError(ex)?.code === 'ERR_CLOCK_SKEW' && (await this.#skewConfirmed(ts, send))) continue;
        throw unauthenticated(this.origin, ex);
      }
      if (!signedBy(this.containerId, oneOffReplyMessage(sig, ex.body), ex.auth)) throw unauthenticated(this.origin, ex, `with a signature that is not by ${this.containerId}`);
      return opened(ex, this.origin);
    }
  }

  // --- code by hash ----------------------------------------------------------------------------------

  knowsCode(h: string): boolean {
    return this.#code.has(h);
  }

  learnedCode(h: string): void {
    if (this.#code.has(h)) return;
    if (this.#code.size >= MAX_KNOWN_CODE) this.#code.delete(this.#code.values().next().value!);
    this.#code.add(h);
  }

  forgetCode(h: string): void {
    this.#code.delete(h);
  }

  /**
   * Runs `fn` on node `to`: by hash once this container has the source from us, the source itself otherwise,
   * and again with the source (once) when the container answers that it no longer has it.
   */
  async eval(to: NodeId, fn: string, h: string, args: Uint8Array, extra: { cap?: Bodies['eval']['cap']; chain?: NodeId[] }, options: SendOptions & { as?: Signer } = {}): Promise<unknown> {
    let byHash = this.knowsCode(h);
    for (;;) {
      try {
        const value = await this.request('eval', to, { ...(byHash ? { h } : { fn }), args, ...extra }, options);
        this.learnedCode(h);
        return value;
      } catch (e) {
        if ((e as KeynodeError).code !== 'ERR_UNKNOWN_CODE') throw e;
        if (!byHash) throw new KeynodeError('ERR_BAD_REPLY', `${this.origin} says it does not have a function it was just sent`);
        this.forgetCode(h);
        byHash = false;
      }
    }
  }
}

async function fetchInfo(options: ChannelOptions, challenge: Uint8Array, send: SendOptions): Promise<ContainerInfo> {
  const { origin } = options;
  const { status, text } = await options.transport.get(`/.well-known/keynode?challenge=${b64url(challenge)}`, send);
  let info: ContainerInfo | undefined;
  try {
    if (text.length <= MAX_INFO_BYTES) info = JSON.parse(text) as ContainerInfo;
  } catch {
    info = undefined;
  }
  if (status !== 200 || typeof info !== 'object' || info === null || !isNodeId(info.containerId)) throw new KeynodeError('ERR_UNAVAILABLE', `${origin} is not a keynode container (no ID at /.well-known/keynode)`);
  if (info.v !== PROTOCOL_VERSION) {
    throw new KeynodeError('ERR_BAD_VERSION', `${origin} speaks keynode protocol version ${String(info.v)}; this client speaks ${PROTOCOL_VERSION}. Upgrade the older side`);
  }
  if (options.containerId !== undefined && info.containerId !== options.containerId) {
    throw new KeynodeError('ERR_BAD_REPLY', `${origin} is container ${info.containerId}, not the ${options.containerId} this client expects`);
  }
  return info;
}

/** A Signer for a raw KeyObject (a container signing for its node). */
export function keySigner(id: NodeId, sign: (m: Uint8Array) => Uint8Array): Signer {
  return { id, sign };
}

export type { KeyObject };
