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

export function httpPost(dispatcher: Dispatcher, path: string, body: Uint8Array, header: string, signal: AbortSignal | undefined): Promise<PostResult> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let status = 0;
    let value: string | undefined;
    let started = false;
    let controller: Dispatcher.DispatchController | undefined;
    const onAbort = () => controller?.abort(signal!.reason as Error);
    const done = () => signal?.removeEventListener('abort', onAbort);
    signal?.addEventListener('abort', onAbort, { once: true });
    dispatcher.dispatch(
      { path, method: 'POST', body, headers: { 'content-type': 'application/msgpack' }, headersTimeout: 0, bodyTimeout: 0 },
      {
        onRequestStart(c) {
          controller = c;
          if (signal?.aborted) c.abort(signal.reason as Error);
        },
        onResponseStart(_c, statusCode, headers) {
          if (statusCode < 200) return; // an informational reply; the real one follows
          started = true;
          status = statusCode;
          const v = headers[header];
          value = typeof v === 'string' ? v : undefined;
        },
        onResponseData(_c, chunk) {
          chunks.push(chunk);
          size += chunk.length;
        },
        onResponseEnd() {
          done();
          resolve({ status, body: new Uint8Array(Buffer.concat(chunks, size)), header: value });
        },
        onResponseError(_c, error) {
          done();
          reject(new PostError(error, started));
        },
      },
    );
  });
}
