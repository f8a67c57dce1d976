/**
 * @module container/remote
 * Messages from this container's nodes to nodes on other containers: session requests (see
 * peer-sessions.ts) POSTed to the node's URL, exactly as a client would send them. Replies are bounded in
 * size and returned with their authenticator, which the session checks.
 */
import { Agent, request } from 'undici';
import { AUTH_HEADER, KeynodeError } from '../../protocol/index.js';
import type { Exchange } from '../../client/session.js';

export class RemotePeers {
  readonly #agent: Agent;
  readonly #maxResponseBytes: number;

  /** `ca`: certificates to trust for peers served over TLS, besides the system's. */
  constructor(maxResponseBytes: number, ca?: string | Buffer) {
    this.#maxResponseBytes = maxResponseBytes;
    this.#agent = new Agent({ connections: 64, keepAliveTimeout: 10_000, ...(ca ? { connect: { ca } } : {}) });
  }

  /** GETs a small text (a peer's /.well-known/keynode). */
  async getText(url: string, timeoutMs: number, maxBytes = 64 * 1024): Promise<{ status: number; text: string }> {
    let res;
    try {
      res = await request(url, { dispatcher: this.#agent, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) });
    } catch (cause) {
      throw new KeynodeError('ERR_UNAVAILABLE', `cannot reach a keynode container at ${url}: ${(cause as Error).message}`, { cause });
    }
    return { status: res.statusCode, text: Buffer.from(await this.#read(res.body, url, maxBytes)).toString('utf8') };
  }

  async #read(body: AsyncIterable<Buffer> & { destroy(): void }, url: string, max: number): Promise<Uint8Array> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of body) {
        size += chunk.length;
        if (size > max) {
          body.destroy();
          throw new KeynodeError('ERR_TOO_LARGE', `the reply from ${url} exceeds ${max} bytes`);
        }
        chunks.push(chunk);
      }
    } catch (cause) {
      if (cause instanceof KeynodeError) throw cause;
      throw new KeynodeError('ERR_UNAVAILABLE', `the reply from ${url} broke off: ${(cause as Error).message}`, { cause });
    }
    return new Uint8Array(Buffer.concat(chunks));
  }

  /** POSTs a message to a node URL; returns the reply's status, bytes and authenticator for its session to check. */
  async post(url: string, envelope: Uint8Array, timeoutMs: number): Promise<Exchange> {
    let res;
    try {
      res = await request(url, {
        method: 'POST',
        body: envelope,
        headers: { 'content-type': 'application/msgpack' },
        dispatcher: this.#agent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (cause) {
      throw new KeynodeError('ERR_UNAVAILABLE', `cannot reach ${url}: ${(cause as Error).message}`, { cause });
    }
    const body = await this.#read(res.body, url, this.#maxResponseBytes);
    const auth = res.headers[AUTH_HEADER];
    return { status: res.statusCode, body, auth: typeof auth === 'string' ? auth : undefined };
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
