/**
 * @module container/edge/peer-sessions
 * Calls from this container's nodes to nodes on other containers, in one session per peer container: the
 * session's principal is this container (its operator key signs the hello), and each request names the node
 * it is sent for with that node's signature over the session, made once per session and node (the peer
 * keeps it), so the peer accepts calls only for nodes whose keys this container holds. Replies are checked
 * like a client checks them (client/session.ts).
 */
import { KeynodeError, parseNodeUrl, type Bodies, type Identity, type MessageType, type NodeId, type Signer } from '../../protocol/index.js';
import { SessionChannel, type Transport } from '../../client/session.js';
import type { RemotePeers } from './remote.js';

const MAX_PEERS = 1024;
/** Moves and lookups share the sockets to a peer as one tenant of their own, beside the nodes' calls. */
const MIGRATION_TENANT = 'keynode/migration';
/** The one discovery of a peer outlives no caller by much: a host that hangs is asked again later. */
const DISCOVER_TIMEOUT_MS = 10_000;

export class PeerSessions {
  readonly #identity: Identity;
  readonly #remote: RemotePeers;
  readonly #channels = new Map<string, Promise<SessionChannel>>();
  /** The channels discovered: a call finds its own at once, without a timer to race the discovery. */
  readonly #ready = new Map<string, SessionChannel>();

  /**
   * Set by the container from its fleet membership: false refuses a container that answers at a member's URL
   * with an ID other than the one pinned (or configured) for it, so a call as a node never goes to an impostor.
   */
  admits: (origin: string, id: NodeId) => boolean | undefined = () => undefined;

  constructor(identity: Identity, remote: RemotePeers) {
    this.#identity = identity;
    this.#remote = remote;
  }

  /** POSTs go through the remote's gate, as the tenant the call is for (a hello too: it is made for a call). */
  #transport(origin: string): Transport {
    const timeout = (o: { timeoutMs?: number | undefined }) => o.timeoutMs ?? DISCOVER_TIMEOUT_MS;
    return {
      post: (path, bytes, o) => this.#remote.post(origin + path, () => bytes, o.deadline ?? Date.now() + timeout(o), o.tenant ?? ''),
      get: (path, o) => this.#remote.getText(origin + path, timeout(o)),
    };
  }

  /**
   * The session channel to the container at `origin`, discovered once (its ID and signed clock). Callers
   * asking at once share one discovery, and each waits no longer than its own `timeoutMs`.
   */
  async #channel(origin: string, timeoutMs: number): Promise<SessionChannel> {
    const ready = this.#ready.get(origin);
    if (ready) return ready;
    let channel = this.#channels.get(origin);
    if (!channel) {
      const discovery = SessionChannel.discover({ origin, identity: this.#identity, transport: this.#transport(origin) }, { timeoutMs: DISCOVER_TIMEOUT_MS }).then((c) => {
        if (this.admits(origin, c.containerId) === false) {
          throw new KeynodeError('ERR_BAD_REPLY', `${origin} answered as container ${c.containerId}, which is not the fleet member known at that URL; refused`);
        }
        return c;
      });
      channel = discovery;
      discovery.then(
        (c) => {
          // Only while it is still the one kept (a flood of origins may have pushed it out meanwhile).
          if (this.#channels.get(origin) === discovery) this.#ready.set(origin, c);
        },
        () => this.#channels.delete(origin),
      );
      if (this.#channels.size >= MAX_PEERS) {
        const oldest = this.#channels.keys().next().value!;
        this.#channels.delete(oldest);
        this.#ready.delete(oldest);
      }
      this.#channels.set(origin, channel);
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new KeynodeError('ERR_UNAVAILABLE', `${origin} did not say who it is within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([channel, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The ID of the container at `origin` (discovered once, its clock signed by that key). */
  async containerIdOf(origin: string, timeoutMs = DISCOVER_TIMEOUT_MS): Promise<NodeId> {
    return (await this.#channel(origin, timeoutMs)).containerId;
  }

  /** The key private keys are sealed to for the container at `origin` (from its signed hello reply). */
  async boxKeyOf(origin: string, timeoutMs = DISCOVER_TIMEOUT_MS): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    return (await this.#channel(origin, timeoutMs)).boxKey({ timeoutMs, tenant: MIGRATION_TENANT, deadline });
  }

  /** A container message to the container at `origin`, in this container's session with it (moves, lookups). */
  async request<T extends MessageType>(origin: string, type: T, body: Bodies[T], timeoutMs: number): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    const channel = await this.#channel(origin, timeoutMs);
    return channel.request(type, channel.containerId, body, { timeoutMs, tenant: MIGRATION_TENANT, deadline });
  }

  /**
   * A container message sent as node `as` (whose key signs the proof, once per session) to the container at
   * `origin`, within `timeoutMs`, on `tenant`'s share of the sockets: a node's child placed there (ctx.spawn),
   * or its end (ctx.destroy, to the node `to`).
   */
  async requestAs<T extends MessageType>(origin: string, as: Signer, type: T, body: Bodies[T], timeoutMs: number, tenant: string, to?: NodeId): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    const channel = await this.#channel(origin, timeoutMs);
    return channel.request(type, to ?? channel.containerId, body, { as, timeoutMs, tenant, deadline });
  }

  /**
   * Runs `fn` on node `to` at `url`, sent as `as` (whose key signs the proof), within `timeoutMs`; `tenant`
   * is whose share of the sockets to that peer the call uses.
   */
  async eval(url: string, as: Signer, to: NodeId, fn: string, h: string, args: Uint8Array, extra: { cap?: Bodies['eval']['cap']; chain?: NodeId[] }, timeoutMs: number, tenant: string): Promise<Uint8Array> {
    const { origin } = parseNodeUrl(url);
    // The call's deadline bounds each of its requests (a hello, the eval, a resend with the source), not each anew.
    const deadline = Date.now() + timeoutMs;
    const channel = await this.#channel(origin, timeoutMs);
    const value = await channel.eval(to, fn, h, args, extra, { as, timeoutMs, tenant, deadline });
    if (!(value instanceof Uint8Array)) throw new KeynodeError('ERR_BAD_REPLY', `${url} returned a malformed eval result`);
    return value;
  }
}
