/**
 * @module container/edge/peer-sessions
 * Calls from this container's nodes to nodes on other containers, in one session per peer container: the
 * session's principal is this container (its operator key signs the hello), and each request names the node
 * it is sent for with that node's signature over the session, made once per session and node (the peer
 * keeps it), so the peer accepts calls only for nodes whose keys this container holds. Replies are checked
 * like a client checks them (client/session.ts).
 */
import { KeynodeError, type Bodies, type Identity, type NodeId, type Signer } from '../../protocol/index.js';
import { SessionChannel, type Transport } from '../../client/session.js';
import type { RemotePeers } from './remote.js';

const MAX_PEERS = 1024;

export class PeerSessions {
  readonly #identity: Identity;
  readonly #remote: RemotePeers;
  readonly #channels = new Map<string, Promise<SessionChannel>>();

  constructor(identity: Identity, remote: RemotePeers) {
    this.#identity = identity;
    this.#remote = remote;
  }

  #transport(origin: string): Transport {
    const timeout = (o: { timeoutMs?: number | undefined }) => o.timeoutMs ?? 30_000;
    return {
      post: (path, bytes, o) => this.#remote.post(origin + path, bytes, timeout(o)),
      get: (path, o) => this.#remote.getText(origin + path, timeout(o)),
    };
  }

  /** The session channel to the container at `origin`, discovered once (its ID and signed clock). */
  #channel(origin: string, timeoutMs: number): Promise<SessionChannel> {
    let channel = this.#channels.get(origin);
    if (!channel) {
      channel = SessionChannel.discover({ origin, identity: this.#identity, transport: this.#transport(origin) }, { timeoutMs });
      channel.catch(() => this.#channels.delete(origin));
      if (this.#channels.size >= MAX_PEERS) this.#channels.delete(this.#channels.keys().next().value!);
      this.#channels.set(origin, channel);
    }
    return channel;
  }

  /** Runs `fn` on node `to` at `url`, sent as `as` (whose key signs the proof), within `timeoutMs`. */
  async eval(url: string, as: Signer, to: NodeId, fn: string, h: string, args: Uint8Array, extra: { cap?: Bodies['eval']['cap']; chain?: NodeId[] }, timeoutMs: number): Promise<Uint8Array> {
    const origin = new URL(url).origin;
    const channel = await this.#channel(origin, timeoutMs);
    const value = await channel.eval(to, fn, h, args, extra, { as, timeoutMs });
    if (!(value instanceof Uint8Array)) throw new KeynodeError('ERR_BAD_REPLY', `${url} returned a malformed eval result`);
    return value;
  }
}
