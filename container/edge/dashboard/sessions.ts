/**
 * @module container/edge/dashboard/sessions
 * Who may see the dashboard: whoever holds the operator key, proved once per browser. `keynode dashboard`
 * signs a short-lived, single-use link token with the operator key; the page sends it (from the URL
 * fragment, which never reaches a server log or a Referer) to POST /dashboard/session and gets an HttpOnly,
 * SameSite=Strict cookie naming a random session kept in memory. The page never holds a key or the token
 * after that exchange; a restart of the container ends every session.
 */
import { randomBytes } from 'node:crypto';
import { KeynodeError, publicKeyFromId, verifyBytes, type NodeId } from '../../../protocol/index.js';

const DOMAIN = new TextEncoder().encode('keynode/dashboard-link/1\n');
export const COOKIE = 'keynode_session';
/** Longest lifetime a link may claim: a link is for opening the page now, not for keeping. */
export const MAX_LINK_SECONDS = 600;
const SESSION_MS = 8 * 3600_000;
const MAX_SESSIONS = 64;
const MAX_USED = 10_000;

export interface LinkClaims {
  v: 1;
  /** The container the link is for. */
  c: NodeId;
  /** Expiry, ms since the epoch. */
  exp: number;
  /** Single use: a nonce is accepted once. */
  n: string;
}

/** The bytes the operator signs for a link (and the container verifies). */
export function linkSigningInput(payload: Uint8Array): Uint8Array {
  return new Uint8Array(Buffer.concat([DOMAIN, payload]));
}

/** `payload.signature`, both base64url: what `keynode dashboard` puts after `#token=`. */
export function makeLinkToken(claims: LinkClaims, sign: (m: Uint8Array) => Uint8Array): string {
  const payload = new TextEncoder().encode(JSON.stringify(claims));
  return `${Buffer.from(payload).toString('base64url')}.${Buffer.from(sign(linkSigningInput(payload))).toString('base64url')}`;
}

function refuse(message: string): KeynodeError {
  return new KeynodeError('ERR_UNAUTHENTICATED', message);
}

export class Sessions {
  readonly #operator: NodeId;
  readonly #containerId: NodeId;
  /** session ID → expiry */
  readonly #sessions = new Map<string, number>();
  /** link nonce → expiry: a link opens one session, once. */
  readonly #used = new Map<string, number>();

  constructor(operator: NodeId, containerId: NodeId) {
    this.#operator = operator;
    this.#containerId = containerId;
  }

  /** Checks a link token (cheap checks before the signature) and opens a session; returns its ID. */
  open(token: unknown, now = Date.now()): string {
    if (typeof token !== 'string' || token.length > 1024 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) throw refuse('not a dashboard link token; run `keynode dashboard` for a new link');
    const [p, s] = token.split('.') as [string, string];
    const payload = new Uint8Array(Buffer.from(p, 'base64url'));
    const sig = new Uint8Array(Buffer.from(s, 'base64url'));
    let claims: Partial<LinkClaims>;
    try {
      claims = JSON.parse(new TextDecoder().decode(payload)) as Partial<LinkClaims>;
    } catch {
      throw refuse('not a dashboard link token; run `keynode dashboard` for a new link');
    }
    if (claims?.v !== 1 || typeof claims.exp !== 'number' || typeof claims.n !== 'string' || claims.n.length > 64) throw refuse('malformed dashboard link; run `keynode dashboard` for a new link');
    if (claims.c !== this.#containerId) throw refuse('this link was made for another container');
    if (claims.exp < now) throw refuse('this dashboard link has expired; run `keynode dashboard` for a new one');
    if (claims.exp > now + MAX_LINK_SECONDS * 1000 + 30_000) throw refuse(`a dashboard link may live ${MAX_LINK_SECONDS} s at most`);
    if (this.#used.has(claims.n)) throw refuse('this dashboard link was used already (each opens one session); run `keynode dashboard` for a new one');
    if (!verifyBytes(publicKeyFromId(this.#operator), this.#operator, linkSigningInput(payload), sig)) throw refuse("this link is not signed by the container's operator key");
    this.#sweep(now);
    if (this.#used.size >= MAX_USED) throw new KeynodeError('ERR_OVERLOADED', 'too many dashboard links opened recently; retry in a few minutes');
    this.#used.set(claims.n, claims.exp);
    if (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    this.#sessions.set(id, now + SESSION_MS);
    return id;
  }

  /** The session named by the request's cookie, if it is one of ours and alive. */
  check(cookieHeader: string | undefined, now = Date.now()): string | undefined {
    const id = cookieValue(cookieHeader, COOKIE);
    if (!id) return undefined;
    const exp = this.#sessions.get(id);
    if (exp === undefined) return undefined;
    if (exp < now) {
      this.#sessions.delete(id);
      return undefined;
    }
    return id;
  }

  end(id: string): void {
    this.#sessions.delete(id);
  }

  cookie(id: string, secure: boolean): string {
    return `${COOKIE}=${id}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=${SESSION_MS / 1000}${secure ? '; Secure' : ''}`;
  }

  static clearCookie(secure: boolean): string {
    return `${COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
  }

  #sweep(now: number): void {
    for (const [n, exp] of this.#used) if (exp < now) this.#used.delete(n);
    for (const [id, exp] of this.#sessions) if (exp < now) this.#sessions.delete(id);
  }
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
