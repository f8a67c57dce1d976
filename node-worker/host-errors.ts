/**
 * @module node-worker/host-errors
 * Errors keynode itself raises inside a worker. A user can call `new err.constructor(code)` on one it
 * caught, but that forgery is not in `genuine`, so it is reported as the user's own error (ERR_USER)
 * and can never pass for a container verdict such as ERR_ACCESS_DENIED.
 */
import { isKeynodeError, KeynodeError, type ErrorCode, type RemoteError } from '../protocol/errors.js';

const genuine = new WeakSet<object>();

declare function harden<T>(value: T): T;

/** Hardened, so user code that catches one cannot rewrite its code and rethrow it as a container verdict. */
export function hostError(code: ErrorCode, message: string, remote?: RemoteError): KeynodeError {
  const e = harden(new KeynodeError(code, message, remote ? { remote } : undefined));
  genuine.add(e);
  return e;
}

export function isGenuine(e: unknown): e is KeynodeError {
  return typeof e === 'object' && e !== null && genuine.has(e);
}

/** What our own libraries threw, with a KeynodeError among it made genuine (for `throw asGenuine(e)`). */
export function asGenuine(e: unknown): unknown {
  return isKeynodeError(e) && !genuine.has(e) ? hostError(e.code, e.message, e.remote) : e;
}
