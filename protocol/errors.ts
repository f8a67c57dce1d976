/**
 * @module protocol/errors
 * Every error that crosses a process or network boundary carries one of these codes. The code is the
 * contract; messages are for people and may change.
 */

/** HTTP status for each code, so the edge maps errors in exactly one place. */
export const ERROR_STATUS = {
  ERR_BAD_MESSAGE: 400, // malformed MessagePack, wrong field types, unknown message type
  ERR_BAD_VERSION: 400, // envelope `v` this container does not speak
  ERR_BAD_NODE_ID: 400, // not a 52-char lowercase base32 Ed25519 public key
  ERR_BAD_URL: 400, // a node URL that does not parse
  ERR_BAD_FUNCTION: 400, // source that is not a plain or async function
  ERR_BAD_POLICY: 400, // a spawn option of the wrong shape or out of range
  ERR_BAD_SIGNATURE: 401, // the signature does not verify against `from`
  ERR_CLOCK_SKEW: 401, // `ts` outside the skew window, or signed before this container started
  ERR_NO_SESSION: 401, // the session named is unknown here (expired, evicted, or the container restarted)
  ERR_BAD_REPLY: 502, // (client side) a reply that is not authenticated by the container it was sent to
  ERR_UNKNOWN_CODE: 409, // an eval named its function by hash, and this container does not have that source
  ERR_ACCESS_DENIED: 403, // the sender is not allowed to do this
  ERR_SANDBOX: 403, // the node's own sandbox forbids what its code tried
  ERR_NODE_NOT_FOUND: 404,
  ERR_NODE_DESTROYED: 404,
  ERR_MOVED: 421, // the node lives on another container now: `location` is its URL (authenticated like any reply); clients follow it
  ERR_REDIRECT_LOOP: 508, // following a node's redirects came back to a container already visited, or passed the hop limit
  ERR_NOT_MOVABLE: 409, // this node cannot move now (a move of it is under way, it is Ephemeral held by a client, its subtree is too large, or it already lives there)
  ERR_NOT_PEER: 403, // a move to, or an import from, a container that is not configured as a peer (--peers)
  ERR_NOT_FOUND: 404, // no such route
  ERR_METHOD_NOT_ALLOWED: 405,
  ERR_REQUEST_TIMEOUT: 408, // the request (headers or body) did not arrive in time
  ERR_HEADERS_TOO_LARGE: 431,
  ERR_REPLAY: 409, // a nonce already seen inside the skew window
  ERR_CYCLE: 409, // an eval calls back into a node already running an eval of the same call chain
  ERR_TOO_LARGE: 413, // request body, result or frame past its cap
  ERR_BUDGET_EXHAUSTED: 429,
  ERR_OVERLOADED: 429, // a queue or cache is full; retry later
  ERR_EVAL_TIMEOUT: 503, // the eval ran past sandbox.timeoutMs; its worker was killed
  ERR_OUT_OF_MEMORY: 503, // the worker passed its memory grant and was killed
  ERR_WORKER_CRASHED: 503, // the worker died during the eval
  ERR_UNAVAILABLE: 503, // the container is shutting down or a peer container cannot be reached
  ERR_PORT_IN_USE: 503, // the container's port is taken (by another container?): nothing was written
  ERR_UNAUTHENTICATED: 401, // a dashboard request without a valid session, or a dashboard link that is bad, used or expired
  ERR_EVAL_ENDED: 400, // a ctx method was called after its eval returned
  ERR_RESULT: 400, // a result or argument that MessagePack cannot carry
  ERR_USER: 200, // the user's function threw; `remote` holds its name, message and code
  ERR_INTERNAL: 503, // a bug in keynode; the container logs it
  ERR_CLOSED: 503, // the client was closed
  ERR_ABORTED: 400, // the caller's AbortSignal fired
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** What a user's thrown value is reduced to when it crosses the wire. */
export interface RemoteError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

/** The wire form of any error. */
export interface WireError {
  code: ErrorCode;
  message: string;
  remote?: RemoteError;
  /** For `ERR_MOVED`: the node's URL now. */
  location?: string;
}

/** A redirect's URL is a node URL: bounded, so a hostile reply cannot make a client hold megabytes. */
const MAX_LOCATION = 2048;

const kKeynodeError = Symbol.for('keynode.error');

/**
 * The one error class of keynode. Check `err.code`, never the message.
 * @example
 * try { await client.at(node, fn) } catch (err) { if (isKeynodeError(err) && err.code === 'ERR_EVAL_TIMEOUT') retry() }
 */
export class KeynodeError extends Error {
  readonly code: ErrorCode;
  /** For `ERR_USER`: the error the user's function threw (name, message, code). */
  declare readonly remote?: RemoteError;
  /** For `ERR_MOVED`: the node's URL now (check it names the same node before following it). */
  declare readonly location?: string;

  constructor(code: ErrorCode, message: string, options?: ErrorOptions & { remote?: RemoteError; location?: string }) {
    super(message, options);
    this.code = code;
    if (options?.remote) Object.defineProperty(this, 'remote', { value: options.remote, enumerable: true });
    if (options?.location !== undefined) Object.defineProperty(this, 'location', { value: options.location, enumerable: true });
  }

  override get name(): string {
    return 'KeynodeError';
  }

  get status(): number {
    return ERROR_STATUS[this.code] ?? 503;
  }

  // Brand so checks work across duplicate copies of the package (undici and execa do the same).
  get [kKeynodeError](): true {
    return true;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return isKeynodeError(value);
  }

  toWire(): WireError {
    const w: WireError = { code: this.code, message: this.message };
    if (this.remote) w.remote = this.remote;
    if (this.location !== undefined) w.location = this.location;
    return w;
  }

  static fromWire(w: unknown): KeynodeError {
    if (typeof w !== 'object' || w === null) return new KeynodeError('ERR_BAD_MESSAGE', 'malformed error from peer');
    const { code, message, remote, location } = w as Partial<WireError>;
    const known = typeof code === 'string' && code in ERROR_STATUS ? code : 'ERR_INTERNAL';
    const text = typeof message === 'string' ? message : String(code);
    const options: { remote?: RemoteError; location?: string } = {};
    if (isRemoteError(remote)) options.remote = remote;
    if (known === 'ERR_MOVED' && typeof location === 'string' && location.length <= MAX_LOCATION) options.location = location;
    return new KeynodeError(known, text, options);
  }
}

export function isKeynodeError(e: unknown): e is KeynodeError {
  return typeof e === 'object' && e !== null && kKeynodeError in e;
}

function isRemoteError(r: unknown): r is RemoteError {
  return typeof r === 'object' && r !== null && typeof (r as RemoteError).name === 'string' && typeof (r as RemoteError).message === 'string';
}

export function isErrorCode(c: unknown): c is ErrorCode {
  return typeof c === 'string' && Object.hasOwn(ERROR_STATUS, c);
}

/** Any thrown value to a KeynodeError; non-keynode errors are internal failures. */
export function toKeynodeError(e: unknown): KeynodeError {
  if (isKeynodeError(e)) return e;
  return new KeynodeError('ERR_INTERNAL', e instanceof Error ? e.message : String(e), { cause: e });
}
