/**
 * @module container/remote
 * Messages from this container's nodes to nodes on other containers: a signed envelope POSTed to the
 * node's URL, exactly as a client would send it. The sockets to each peer are shared between tenants
 * through a PeerGate, so one tenant's slow calls cannot take another's place.
 */
import { Agent, request } from 'undici';
import { decode, KeynodeError, parseNodeUrl, type Reply } from '../../protocol/index.js';
import { PeerGate, type PeerLimits } from './peer-gate.js';

export class RemotePeers {
  readonly #agent: Agent;
  readonly #gate: PeerGate;
  readonly #maxResponseBytes: number;

  constructor(maxResponseBytes: number, limits: PeerLimits) {
    this.#maxResponseBytes = maxResponseBytes;
    this.#gate = new PeerGate(limits);
    this.#agent = new Agent({ connections: limits.total, keepAliveTimeout: 10_000 });
  }

  /** Calls to peer containers in flight, and waiting for their tenant's share. */
  counts(): { active: number; waiting: number } {
    return this.#gate.counts();
  }

  /**
   * POSTs an envelope to a node URL for `tenant` and returns the reply's value, or throws its error. The
   * envelope is sealed once a connection is this tenant's to use, so time spent waiting never ages its
   * timestamp.
   */
  async post(url: string, seal: () => Uint8Array, deadline: number, tenant: string): Promise<unknown> {
    const release = await this.#gate.acquire(parseNodeUrl(url).origin, tenant, deadline);
    try {
      return await this.#send(url, seal(), Math.max(1, deadline - Date.now()));
    } finally {
      release();
    }
  }

  async #send(url: string, envelope: Uint8Array, timeoutMs: number): Promise<unknown> {
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
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body) {
        size += chunk.length;
        if (size > this.#maxResponseBytes) {
          res.body.destroy();
          throw new KeynodeError('ERR_TOO_LARGE', `the reply from ${url} exceeds ${this.#maxResponseBytes} bytes`);
        }
        chunks.push(chunk);
      }
    } catch (cause) {
      if (cause instanceof KeynodeError) throw cause;
      throw new KeynodeError('ERR_UNAVAILABLE', `the reply from ${url} broke off: ${(cause as Error).message}`, { cause });
    }
    const reply = decode(Buffer.concat(chunks)) as Reply;
    if (typeof reply !== 'object' || reply === null || typeof reply.ok !== 'boolean') throw new KeynodeError('ERR_BAD_MESSAGE', `${url} did not answer as a keynode container`);
    if (!reply.ok) throw KeynodeError.fromWire(reply.error);
    return reply.value;
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
