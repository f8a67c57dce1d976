/**
 * @module container/migration/locator
 * Fleet URLs: a request at this container for a node it does not know is answered with a redirect to where
 * the node lives, found by asking the peers. No container keeps a directory of the fleet's nodes: each peer
 * answers a `locate` from its own store with one read (the node's record, or its forwarding record), and
 * this container keeps a bounded cache of the answers (and of "nowhere", briefly). A lookup costs one round
 * trip to every peer at once, the first time a node is asked for here; a peer never asks on, so a lookup
 * cannot go round the fleet.
 */
import { isKeynodeError, KeynodeError, parseNodeUrl, type NodeId } from '../../protocol/index.js';

export interface LocatorOptions {
  peers(): string[];
  ask(origin: string, id: NodeId, timeoutMs: number): Promise<{ url?: unknown }>;
  /** This container's origin: an answer pointing back here is no answer. */
  self: string;
  maxEntries?: number;
  ttlMs?: number;
  missTtlMs?: number;
  timeoutMs?: number;
  maxInFlight?: number;
}

interface Answer {
  url: string | undefined;
  until: number;
}

export class Locator {
  readonly #o: Required<LocatorOptions>;
  readonly #cache = new Map<NodeId, Answer>();
  readonly #asking = new Map<NodeId, Promise<string | undefined>>();

  constructor(options: LocatorOptions) {
    this.#o = { maxEntries: 100_000, ttlMs: 60_000, missTtlMs: 2_000, timeoutMs: 3_000, maxInFlight: 256, ...options };
  }

  /** The node's URL on another container of the fleet, or undefined when no peer has it. */
  locate(id: NodeId): Promise<string | undefined> {
    const hit = this.#cache.get(id);
    if (hit && hit.until > Date.now()) return Promise.resolve(hit.url);
    let p = this.#asking.get(id);
    if (!p) {
      // Any stranger can name a node ID that exists nowhere: the fan-out it causes is bounded at once.
      if (this.#asking.size >= this.#o.maxInFlight) return Promise.reject(new KeynodeError('ERR_OVERLOADED', 'too many node lookups across the fleet are in flight; retry shortly'));
      p = this.#ask(id).finally(() => this.#asking.delete(id));
      this.#asking.set(id, p);
    }
    return p;
  }

  /** A node arrived here or left: what the cache says of it is stale. */
  forget(id: NodeId): void {
    this.#cache.delete(id);
  }

  /**
   * Every peer at once. The container that has the node answers for it: the first such answer settles the
   * lookup (a peer that hangs delays only lookups that no peer has the node for); otherwise a forwarding
   * record's, once all have answered.
   */
  #ask(id: NodeId): Promise<string | undefined> {
    const peers = this.#o.peers();
    return new Promise<string | undefined>((resolve, reject) => {
      let left = peers.length;
      let forwarded: string | undefined;
      let settled = false;
      const done = (url: string | undefined) => {
        if (settled) return;
        settled = true;
        this.#remember(id, url);
        resolve(url);
      };
      if (!left) return done(undefined);
      for (const origin of peers) {
        this.#o.ask(origin, id, this.#o.timeoutMs).then(
          ({ url }) => {
            if (typeof url !== 'string') return;
            const p = parseNodeUrl(url);
            // A peer's answer is hostile input: it must name this node, and not send the caller back here.
            if (p.id !== id || p.origin === this.#o.self) return;
            if (p.origin === origin) done(p.url);
            else forwarded ??= p.url;
          },
          (e: unknown) => {
            if (!isKeynodeError(e)) reject(e); // a peer down or refusing is a peer that does not know
          },
        ).catch(() => {}).finally(() => {
          if (--left === 0) done(forwarded);
        });
      }
    });
  }

  #remember(id: NodeId, url: string | undefined): void {
    if (this.#cache.size >= this.#o.maxEntries) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(id, { url, until: Date.now() + (url ? this.#o.ttlMs : this.#o.missTtlMs) });
  }
}
