/**
 * @module container/remote
 * Messages from this container's nodes to nodes on other containers: a signed envelope POSTed to the
 * node's URL, exactly as a client would send it.
 */
import { Agent, request } from 'undici';
import { decode, KeynodeError, type Reply } from '../../protocol/index.js';

export class RemotePeers {
  readonly #agent = new Agent({ connections: 64, keepAliveTimeout: 10_000 });
  readonly #maxResponseBytes: number;

  constructor(maxResponseBytes: number) {
    this.#maxResponseBytes = maxResponseBytes;
  }

  /** POSTs envelope bytes to a node URL and returns the reply's value, or throws its error. */
  async post(url: string, envelope: Uint8Array, timeoutMs: number): Promise<unknown> {
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
