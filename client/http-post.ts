/**
 * @module client/http-post
 * One POST on an undici pool, read whole: the status, the body's bytes and one header. Through undici's
 * handler interface rather than `request()`, which makes a Readable stream and an AbortSignal listener for
 * every response, and consuming that stream costs more CPU than the rest of a small exchange (measured
 * ~12–50 µs per request on the 2-core machine, of ~100 for the whole round trip).
 */
import type { Dispatcher } from 'undici';

export interface PostResult {
  status: number;
  body: Uint8Array;
  /** The value of the header asked for: undefined when absent or sent more than once. */
  header: string | undefined;
}

/** Why a POST failed, and whether its reply had begun (then it broke off; else the peer was not reached). */
export class PostError extends Error {
  override readonly cause: Error;
  readonly replyStarted: boolean;
  constructor(cause: Error, replyStarted: boolean) {
    super(cause.message, { cause });
    this.cause = cause;
    this.replyStarted = replyStarted;
  }
}

export interface PostOptions {
  /** For an Agent (which serves many origins); a Pool knows its own. */
  origin?: string;
  path: string;
  body: Uint8Array;
  /** The response header to return (lowercase). */
  header: string;
  signal?: AbortSignal | undefined;
  /** The whole exchange ends by then (undefined: no limit). */
  timeoutMs?: number;
  /** A reply past this many bytes ends the exchange with `tooLarge()`. */
  maxBytes?: number;
  tooLarge?: () => Error;
}

export function httpPost(dispatcher: Dispatcher, o: PostOptions): Promise<PostResult> {
  const { signal } = o;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let status = 0;
    let value: string | undefined;
    let started = false;
    let controller: Dispatcher.DispatchController | undefined;
    let failure: Error | undefined;
    const abort = (e: Error) => {
      failure ??= e;
      controller?.abort(e);
    };
    const onAbort = () => abort(signal!.reason as Error);
    const timer = o.timeoutMs === undefined ? undefined : setTimeout(() => abort(new Error(`no complete reply within ${o.timeoutMs} ms`)), o.timeoutMs);
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const limit = o.timeoutMs ?? 0;
    dispatcher.dispatch(
      { ...(o.origin ? { origin: o.origin } : {}), path: o.path, method: 'POST', body: o.body, headers: { 'content-type': 'application/msgpack' }, headersTimeout: limit, bodyTimeout: limit },
      {
        onRequestStart(c) {
          controller = c;
          if (failure) c.abort(failure);
          else if (signal?.aborted) abort(signal.reason as Error);
        },
        onResponseStart(_c, statusCode, headers) {
          if (statusCode < 200) return; // an informational reply; the real one follows
          started = true;
          status = statusCode;
          const v = headers[o.header];
          value = typeof v === 'string' ? v : undefined;
        },
        onResponseData(_c, chunk) {
          size += chunk.length;
          if (o.maxBytes !== undefined && size > o.maxBytes) return abort(o.tooLarge?.() ?? new Error(`the reply exceeds ${o.maxBytes} bytes`));
          chunks.push(chunk);
        },
        onResponseEnd() {
          done();
          resolve({ status, body: new Uint8Array(Buffer.concat(chunks, size)), header: value });
        },
        onResponseError(_c, error) {
          done();
          reject(new PostError(failure ?? error, started));
        },
      },
    );
  });
}
