/**
 * @module container/peer-ids
 * Other containers' IDs by origin, for signing a node's call to a node there: an envelope names the
 * container it is for, so a copy replayed at another container holding the same node key is refused.
 * Asked once per origin from its /.well-known/keynode, bounded in number and in reply size.
 */
import { request, type Dispatcher } from 'undici';
import { isNodeId, KeynodeError, type NodeId } from '../../protocol/index.js';

const MAX_PEERS = 4096;
const MAX_INFO_BYTES = 4096;
/** The one request for an origin's ID outlives no caller by much: a host that hangs is asked again later. */
const ASK_TIMEOUT_MS = 10_000;

export class PeerIds {
  readonly #ids = new Map<string, NodeId>();
  readonly #asking = new Map<string, Promise<NodeId>>();
  readonly #dispatcher: Dispatcher | undefined;

  constructor(dispatcher?: Dispatcher) {
    this.#dispatcher = dispatcher;
  }

  /**
   * The ID of the container serving `url` (a node URL or an origin). Callers asking for one origin at once
   * share one request, and each waits no longer than its own `timeoutMs`.
   */
  async of(url: string, timeoutMs: number): Promise<NodeId> {
    const origin = new URL(url).origin;
    const known = this.#ids.get(origin);
    if (known) return known;
    let asking = this.#asking.get(origin);
    if (!asking) {
      asking = this.#ask(origin, ASK_TIMEOUT_MS).finally(() => this.#asking.delete(origin));
      this.#asking.set(origin, asking);
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new KeynodeError('ERR_UNAVAILABLE', `${origin} did not say its container ID within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([asking, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #ask(origin: string, timeoutMs: number): Promise<NodeId> {
    let id: unknown;
    try {
      const res = await request(`${origin}/.well-known/keynode`, { dispatcher: this.#dispatcher, signal: AbortSignal.timeout(timeoutMs), headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += chunk.length;
        if (size > MAX_INFO_BYTES) {
          res.body.destroy();
          break;
        }
        chunks.push(chunk);
      }
      if (res.statusCode === 200 && size <= MAX_INFO_BYTES) id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { containerId?: unknown }).containerId;
    } catch (cause) {
      throw new KeynodeError('ERR_UNAVAILABLE', `cannot reach a keynode container at ${origin}: ${(cause as Error).message}`, { cause });
    }
    if (!isNodeId(id)) throw new KeynodeError('ERR_UNAVAILABLE', `${origin} is not a keynode container (no ID at /.well-known/keynode)`);
    if (this.#ids.size >= MAX_PEERS) this.#ids.delete(this.#ids.keys().next().value!);
    this.#ids.set(origin, id);
    return id;
  }
}
