/**
 * @module container/edge/peer-gate
 * Who may use the sockets to a peer container next. Calls to one peer share its sockets, and a call holds one
 * until the peer answers, so a tenant with many slow calls there could otherwise hold them all and make every
 * other tenant's calls to that peer wait (or time out). Each tenant has at most `perTenant` requests in flight
 * to one peer, all tenants together at most `total` (the sockets kept to it). A tenant past its share waits,
 * in arrival order, at most `queue` requests deep and never past its call's deadline; beyond either it is
 * refused with ERR_OVERLOADED. When all sockets are busy, a freed one goes to the waiting tenant with the
 * fewest in flight, so one with a single call waiting goes before one with many.
 */
import { KeynodeError } from '../../protocol/index.js';

export interface PeerLimits {
  /** Requests in flight to one peer, across tenants. */
  total: number;
  /** Requests in flight to one peer, per tenant. */
  perTenant: number;
  /** Requests one tenant may have waiting for one peer. */
  queue: number;
}

interface Waiter {
  grant(): void;
}

/** One tenant's use of one peer. */
interface Share {
  active: number;
  waiting: Waiter[];
}

interface Peer {
  active: number;
  shares: Map<string, Share>;
}

/** Gives back what `acquire` took; calling it twice does nothing. */
export type Release = () => void;

export class PeerGate {
  readonly #limits: PeerLimits;
  /** Only peers with calls in flight or waiting: a tenant cannot grow this by naming hosts it no longer calls. */
  readonly #peers = new Map<string, Peer>();

  constructor(limits: PeerLimits) {
    this.#limits = limits;
  }

  /** Resolves once `tenant` may send one request to `origin`; the caller must call the release when done. */
  acquire(origin: string, tenant: string, deadline: number): Promise<Release> {
    const { total, perTenant, queue } = this.#limits;
    let peer = this.#peers.get(origin);
    if (!peer) this.#peers.set(origin, (peer = { active: 0, shares: new Map() }));
    let share = peer.shares.get(tenant);
    if (!share) peer.shares.set(tenant, (share = { active: 0, waiting: [] }));
    if (share.waiting.length === 0 && share.active < perTenant && peer.active < total) return Promise.resolve(this.#take(origin, peer, tenant, share));
    const wait = deadline - Date.now();
    if (share.waiting.length >= queue || wait <= 0) {
      this.#tidy(origin, peer, tenant, share);
      return Promise.reject(new KeynodeError('ERR_OVERLOADED', `this tenant already has ${share.active} calls in flight to ${origin} and ${share.waiting.length} waiting (at most ${perTenant} and ${queue}); await some first`));
    }
    const s = share;
    const p = peer;
    return new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(timer);
          resolve(this.#take(origin, p, tenant, s));
        },
      };
      const timer = setTimeout(() => {
        s.waiting.splice(s.waiting.indexOf(waiter), 1);
        this.#tidy(origin, p, tenant, s);
        reject(new KeynodeError('ERR_OVERLOADED', `no connection to ${origin} came free for this tenant before the call's deadline (${s.active} of its calls are in flight there)`));
      }, wait);
      s.waiting.push(waiter);
    });
  }

  /** Requests in flight to peers and waiting for a share, across peers and tenants. */
  counts(): { active: number; waiting: number } {
    let active = 0;
    let waiting = 0;
    for (const peer of this.#peers.values()) {
      active += peer.active;
      for (const s of peer.shares.values()) waiting += s.waiting.length;
    }
    return { active, waiting };
  }

  #take(origin: string, peer: Peer, tenant: string, share: Share): Release {
    peer.active++;
    share.active++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      peer.active--;
      share.active--;
      this.#pump(peer);
      this.#tidy(origin, peer, tenant, share);
    };
  }

  /** Hands free slots to waiting tenants, fewest in flight first. */
  #pump(peer: Peer): void {
    const { total, perTenant } = this.#limits;
    while (peer.active < total) {
      let next: Share | undefined;
      for (const s of peer.shares.values()) {
        if (s.waiting.length && s.active < perTenant && (!next || s.active < next.active)) next = s;
      }
      if (!next) return;
      next.waiting.shift()!.grant();
    }
  }

  #tidy(origin: string, peer: Peer, tenant: string, share: Share): void {
    if (share.active || share.waiting.length) return;
    peer.shares.delete(tenant);
    if (!peer.shares.size) this.#peers.delete(origin);
  }
}
