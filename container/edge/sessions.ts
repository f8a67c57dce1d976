/**
 * @module container/edge/sessions
 * The container's sessions: opened by a signed hello (the container answers, signed, with its X25519 key),
 * then used by MACed requests whose counters must fall in a sliding window, each counter once. Sessions end
 * `ttlMs` after they were opened, on a restart (they live only in memory), or when a principal opens more
 * than its share (its oldest goes) or the table is full (the oldest goes: it would end first anyway). Every
 * lookup is by session ID in a Map; nothing here scans more than what expired.
 */
import { randomBytes } from 'node:crypto';
import {
  b64url, frameMacValid, KeynodeError, noSessionMessage, parseFrame, replyMac, SESSION_WINDOW, sessionKeys, verifySpeaksFor, x25519Pair, x25519Secret,
  type Bodies, type Envelope, type HelloReply, type NodeId, type SessionFrame, type SessionKeys,
} from '../../protocol/index.js';
import type { AddressLimiter } from './rate-limit.js';

export interface SessionLimits {
  ttlMs: number;
  /** Sessions held at once, all principals together. */
  maxSessions: number;
  /** Sessions one principal holds at once (a program with several clients, a peer container's restarts). */
  maxPerPrincipal: number;
}

/** Principals one session may speak for (a container calling for its nodes), kept with their proofs. */
const MAX_VOUCHED = 4096;

/**
 * Counters accepted so far: the highest, and which of the `size` below it were seen (a ring of bits). One
 * behind the window, or seen, is a replay.
 */
export class CounterWindow {
  readonly size: number;
  #high = 0;
  readonly #bits: Uint32Array;

  constructor(size = SESSION_WINDOW) {
    this.size = size;
    this.#bits = new Uint32Array(Math.ceil(size / 32));
  }

  get high(): number {
    return this.#high;
  }

  #bit(n: number): [number, number] {
    const i = n % this.size;
    return [i >>> 5, 1 << (i & 31)];
  }

  /** Records `n` and returns true, or returns false for a counter seen before or behind the window. */
  accept(n: number): boolean {
    if (n > this.#high) {
      if (n - this.#high >= this.size) this.#bits.fill(0);
      else for (let c = this.#high + 1; c < n; c++) {
        const [w, m] = this.#bit(c);
        this.#bits[w]! &= ~m;
      }
      this.#high = n;
      const [w, m] = this.#bit(n);
      this.#bits[w]! |= m;
      return true;
    }
    if (n <= this.#high - this.size) return false;
    const [w, m] = this.#bit(n);
    if (this.#bits[w]! & m) return false;
    this.#bits[w]! |= m;
    return true;
  }
}

export interface Session {
  id: string;
  sid: Uint8Array;
  principal: NodeId;
  keys: SessionKeys;
  expiresAt: number;
  window: CounterWindow;
  /** Principals this session's principal proved it speaks for, with the proof it gave. */
  vouched: Map<NodeId, Uint8Array>;
}

export class SessionTable {
  readonly #limits: SessionLimits;
  /** In the order they were opened, which is the order they expire in. */
  readonly #byId = new Map<string, Session>();
  readonly #byPrincipal = new Map<NodeId, Session[]>();
  readonly #sweep: NodeJS.Timeout;
  opened = 0;
  evicted = 0;

  constructor(limits: SessionLimits) {
    this.#limits = limits;
    this.#sweep = setInterval(() => this.#expire(Date.now()), Math.max(100, Math.min(60_000, limits.ttlMs))).unref();
  }

  get size(): number {
    return this.#byId.size;
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#byId.clear();
    this.#byPrincipal.clear();
  }

  add(principal: NodeId, keys: SessionKeys, sid: Uint8Array, now = Date.now()): Session {
    this.#expire(now);
    const mine = this.#byPrincipal.get(principal) ?? [];
    while (mine.length >= this.#limits.maxPerPrincipal) this.#remove(mine[0]!);
    while (this.#byId.size >= this.#limits.maxSessions) this.#remove(this.#byId.values().next().value!);
    const session: Session = { id: b64url(sid), sid, principal, keys, expiresAt: now + this.#limits.ttlMs, window: new CounterWindow(), vouched: new Map() };
    this.#byId.set(session.id, session);
    mine.push(session);
    this.#byPrincipal.set(principal, mine);
    this.opened++;
    return session;
  }

  get(sid: Uint8Array, now = Date.now()): Session | undefined {
    const s = this.#byId.get(b64url(sid));
    if (!s) return undefined;
    if (s.expiresAt <= now) {
      this.#remove(s, false);
      return undefined;
    }
    return s;
  }

  /** Sessions of one principal (tests). */
  of(principal: NodeId): readonly Session[] {
    return this.#byPrincipal.get(principal) ?? [];
  }

  #remove(s: Session, evicted = true): void {
    if (!this.#byId.delete(s.id)) return;
    if (evicted) this.evicted++;
    const mine = this.#byPrincipal.get(s.principal);
    if (!mine) return;
    const i = mine.indexOf(s);
    if (i >= 0) mine.splice(i, 1);
    if (!mine.length) this.#byPrincipal.delete(s.principal);
  }

  #expire(now: number): void {
    for (const s of this.#byId.values()) {
      if (s.expiresAt > now) break;
      this.#remove(s, false);
    }
  }
}

export interface SessionEdgeDeps {
  containerId: NodeId;
  /** Signs as the container (its operator key). */
  sign(message: Uint8Array): Uint8Array;
  boxKey: Uint8Array;
  maxBodyBytes: number;
  limiter: AddressLimiter;
  table: SessionTable;
  ttlMs: number;
}

/** A session request, authenticated: the envelope the operations see, and how to authenticate its reply. */
export interface OpenedFrame {
  env: Envelope;
  frame: SessionFrame;
  session: Session;
}

/** How the edge authenticates a reply's bytes (the header value), once it knows to whom it answers. */
export type ReplyAuth = (body: Uint8Array) => string;

export class SessionEdge {
  readonly #d: SessionEdgeDeps;

  constructor(deps: SessionEdgeDeps) {
    this.#d = deps;
  }

  get table(): SessionTable {
    return this.#d.table;
  }

  /** Before a hello's signature is checked: a burst from one address is refused here. */
  admitHello(address: string | undefined): void {
    this.#d.limiter.check(address, 'session handshakes');
  }

  /** A verified, fresh hello: a new session for its sender. */
  hello(env: Envelope<'hello'>): HelloReply {
    const { epk } = env.body as Bodies['hello'];
    if (!(epk instanceof Uint8Array) || epk.length !== 32) throw new KeynodeError('ERR_BAD_MESSAGE', 'a hello carries `epk`, a 32-byte X25519 public key');
    const pair = x25519Pair();
    const sid = new Uint8Array(randomBytes(16));
    const keys = sessionKeys(x25519Secret(pair.privateKey, epk), sid, env.from, this.#d.containerId, epk, pair.publicKey);
    this.#d.table.add(env.from, keys, sid);
    return { sid, epk: pair.publicKey, time: Date.now(), ttlMs: this.#d.ttlMs, window: SESSION_WINDOW, boxKey: this.#d.boxKey, maxBodyBytes: this.#d.maxBodyBytes };
  }

  /**
   * Checks a session request, cheapest first: its shape, its session, its MAC, then its counter and whom it
   * speaks for. `authenticate` is called as soon as the reply can be authenticated (MAC in the session; a
   * container signature when the session is unknown, within the address's rate), so every refusal after
   * that point reaches the client authenticated.
   */
  open(bytes: Uint8Array, address: string | undefined, authenticate: (auth: ReplyAuth) => void): OpenedFrame {
    const frame = parseFrame(bytes);
    const session = this.#d.table.get(frame.sid);
    if (!session) {
      // Signed, so a client can trust that nothing ran and safely open a session and send again; signing
      // costs the container, so a flood of unknown sessions from one address gets ERR_OVERLOADED unsigned.
      this.#d.limiter.check(address, 'requests naming unknown sessions');
      authenticate((body) => b64url(this.#d.sign(noSessionMessage(frame.mac, body))));
      throw new KeynodeError('ERR_NO_SESSION', 'this container has no such session (it expired, was replaced, or the container restarted); open a new one');
    }
    if (!frameMacValid(session.keys.request, frame)) throw new KeynodeError('ERR_BAD_SIGNATURE', 'the MAC does not verify in this session');
    authenticate((body) => replyMac(session.keys.reply, frame.mac, body));
    if (!session.window.accept(frame.n)) {
      throw new KeynodeError('ERR_REPLAY', `counter ${frame.n} of this session was already used, or is more than ${session.window.size} behind the highest (${session.window.high})`);
    }
    let from = session.principal;
    const as = frame.extra?.as;
    if (as !== undefined && as !== session.principal) {
      const proof = frame.extra?.proof;
      const known = session.vouched.get(as);
      if (!proof) throw new KeynodeError('ERR_ACCESS_DENIED', `this session's principal ${session.principal} sends as ${as} without its proof`);
      if (!known || !Buffer.from(known).equals(proof)) {
        if (!verifySpeaksFor(session.sid, session.principal, this.#d.containerId, as, proof)) throw new KeynodeError('ERR_BAD_SIGNATURE', `the proof that ${session.principal} speaks for ${as} does not verify for this session`);
        if (session.vouched.size >= MAX_VOUCHED) session.vouched.delete(session.vouched.keys().next().value!);
        session.vouched.set(as, proof);
      }
      from = as;
    }
    const env: Envelope = { v: 3, type: frame.type, from, to: frame.to, at: this.#d.containerId, ts: Date.now(), nonce: frame.mac, body: undefined as never };
    return { env, frame, session };
  }
}
