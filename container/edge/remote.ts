/**
 * @module container/remote
 * Messages from this container's nodes to nodes on other containers: session requests (see
 * peer-sessions.ts) POSTed to the node's URL, exactly as a client would send them. The sockets to each peer
 * are shared between tenants through a PeerGate, so one tenant's slow calls cannot take another's place.
 * Replies are bounded in size and returned with their authenticator, which the session checks.
 */
import { Agent, request } from 'undici';
import { AUTH_HEADER, KeynodeError } from '../../protocol/index.js';
import { httpPost, PostError } from '../../client/http-post.js';
import type { Exchange } from '../../client/session.js';
import { PeerGate, type PeerLimits } from './peer-gate.js';

export class RemotePeers {
  readonly #agent: Agent;
  readonly #gate: PeerGate;
  readonly #maxResponseBytes: number;

  /** `ca`: certificates to trust for peers served over TLS, besides the system's. */
  constructor(maxResponseBytes: number, limits: PeerLimits, ca?: string | Buffer) {
    this.#maxResponseBytes = maxResponseBytes;
    this.#gate = new PeerGate(limits);
    this.#agent = new Agent({ connections: limits.total, keepAliveTimeout: 10_000, ...(ca ? { connect: { ca } } : {}) });
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

  /** Calls to peer containers in flight, and waiting for their tenant's share. */
  counts(): { active: number; waiting: number } {
    return this.#gate.counts();
  }

  /**
   * POSTs a message to a URL of a peer for `tenant`; returns the reply's status, bytes and authenticator for
   * its session to check. The message is made once a connection is this tenant's to use, so time spent
   * waiting never ages it.
   */
  async post(url: string, seal: () => Uint8Array, deadline: number, tenant: string): Promise<Exchange> {
    const u = new URL(url);
    const release = await this.#gate.acquire(u.origin, tenant, deadline);
    try {
      return await this.#send(u.origin, `${u.pathname}${u.search}`, seal(), Math.max(1, deadline - Date.now()));
    } finally {
      release();
    }
  }

  /** Through undici's handler interface (client/http-post.ts): no stream, signal or iterator per reply. */
  async #send(origin: string, path: string, envelope: Uint8Array, timeoutMs: number): Promise<Exchange> {
    const url = origin + path;
    const max = this.#maxResponseBytes;
    try {
      const res = await httpPost(this.#agent, { origin, path, body: envelope, header: AUTH_HEADER, timeoutMs, maxBytes: max, tooLarge: () => new KeynodeError('ERR_TOO_LARGE', `the reply from ${url} exceeds ${max} bytes`) });
      return { status: res.status, body: res.body, auth: res.header };
    } catch (e) {
      const cause = e instanceof PostError ? e.cause : (e as Error);
      if (cause instanceof KeynodeError) throw cause;
      if (e instanceof PostError && e.replyStarted) throw new KeynodeError('ERR_UNAVAILABLE', `the reply from ${url} broke off: ${cause.message}`, { cause });
      throw new KeynodeError('ERR_UNAVAILABLE', `cannot reach ${url}: ${cause.message}`, { cause });
    }
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
