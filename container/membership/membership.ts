/**
 * @module container/membership/membership
 * The other containers of this fleet, and their load. Every `fleetRefreshMs` this container asks each member
 * for its load (one `load` message in a protocol-v3 session, so the answer is authenticated as coming from
 * that member's container ID); `dns:` entries are resolved again every `fleetResolveMs`.
 *
 * A resolved address is not a member's URL: each pod's URL is its stable DNS name (`--public-url`). So an
 * address is asked which URL it serves (`/.well-known/keynode`), and that URL is then reached on its own:
 * the member is whoever answers there, so an address that names someone else's URL adds nothing.
 *
 * Identities are pinned on first contact (trust on first use), per URL, for as long as this container runs:
 * a container that later answers at a pinned URL with another ID is refused (a log line and
 * `keynode_peer_identity_refusals_total`), never silently believed. The member's own entry is skipped
 * (a fleet may hand every container the same `--peers` list, itself included).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import {
  checkLoadReport, isKeynodeError, MAX_MEMBERS, originOf, type Load, type MemberView, type NodeId, type Signer,
} from '../../protocol/index.js';
import { SessionChannel, type Transport } from '../../client/session.js';
import type { RemotePeers } from '../edge/remote.js';
import { addressOrigin, peerEntries, systemLookup, type Lookup, type PeerEntry } from './peer-entries.js';

export interface MembershipOptions {
  self: { id: NodeId; url: string };
  peers: readonly string[];
  /** When given, the only container IDs accepted as members (configured identities; otherwise pinned on first contact). */
  allowedIds?: readonly NodeId[] | undefined;
  /** Who this container is in its sessions with peers (the operator key, whose public key is the container ID). */
  identity: Signer;
  remote: RemotePeers;
  refreshMs: number;
  resolveMs: number;
  logger: Logger;
  lookup?: Lookup;
  /** A member answered at a pinned URL with another container ID. */
  onRefused?: (url: string) => void;
}

interface Member {
  url: string;
  via?: string;
  state: MemberView['state'];
  containerId?: NodeId;
  channel?: SessionChannel;
  load?: Load;
  at?: number;
  error?: string;
  busy: boolean;
}

/** Whose share of the sockets to a peer load polls use (see edge/peer-gate.ts): never a tenant's. */
const TENANT = `keynode:membership:${randomUUID()}`;
/** Pins kept at most: URLs this container has ever met, which a churning DNS name could otherwise grow. */
const MAX_PINS = 4 * MAX_MEMBERS;

export class Membership {
  readonly #o: MembershipOptions;
  readonly #entries: PeerEntry[];
  readonly #lookup: Lookup;
  readonly #members = new Map<string, Member>();
  /** URL → the container ID first met there. */
  readonly #pins = new Map<string, NodeId>();
  /** Per dns entry, the address origins it resolved to last time and the member URL each stated (or 'self'). */
  readonly #addresses = new Map<string, Map<string, string>>();
  #timer: NodeJS.Timeout | undefined;
  #lastResolve = 0;
  #round: Promise<void> | undefined;
  #closed = false;

  constructor(options: MembershipOptions) {
    this.#o = options;
    this.#entries = peerEntries(options.peers);
    this.#lookup = options.lookup ?? systemLookup;
    for (const e of this.#entries) {
      if (e.kind === 'url' && e.origin !== options.self.url) this.#members.set(e.origin, { url: e.origin, state: 'down', error: 'not asked yet', busy: false });
    }
  }

  /** Starts the periodic rounds; the first runs now. */
  start(): void {
    if (!this.#entries.length || this.#timer) return;
    void this.refresh();
    this.#timer = setInterval(() => void this.refresh(), this.#o.refreshMs).unref();
  }

  /** One round (resolve when due, then ask every member its load); a round in progress is joined, not doubled. */
  refresh(): Promise<void> {
    this.#round ??= this.#roundOnce().finally(() => (this.#round = undefined));
    return this.#round;
  }

  /** URLs of the members whose identity checked out and that answered the last round: where to forward or place. */
  peerUrls(): string[] {
    return [...this.#members.values()].filter((m) => m.state === 'up').map((m) => m.url);
  }

  /** Every member known, up or not, with its last load (the `load` reply, `keynode peers`, /metrics). */
  members(): MemberView[] {
    const now = Date.now();
    return [...this.#members.values()].map((m) => {
      const v: MemberView = { url: m.url, state: m.state };
      if (m.containerId) v.containerId = m.containerId;
      if (m.load) v.load = m.load;
      if (m.at !== undefined) v.ageMs = Math.max(0, now - m.at);
      if (m.error) v.error = m.error;
      if (m.via) v.via = m.via;
      return v;
    });
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
  }

  async #roundOnce(): Promise<void> {
    if (this.#closed) return;
    if (Date.now() - this.#lastResolve >= this.#o.resolveMs) {
      this.#lastResolve = Date.now();
      await Promise.all(this.#entries.map((e) => (e.kind === 'dns' ? this.#resolve(e) : undefined)));
    }
    await Promise.all([...this.#members.values()].map((m) => this.#poll(m)));
  }

  #transport(origin: string): Transport {
    const timeoutMs = this.#timeoutMs();
    return {
      post: (path, bytes, o) => this.#o.remote.post(origin + path, () => bytes, o.deadline ?? Date.now() + timeoutMs, TENANT),
      get: (path) => this.#o.remote.getText(origin + path, timeoutMs),
    };
  }

  /** A poll outlives its period by little: a peer that hangs is asked again next round, not waited on. */
  #timeoutMs(): number {
    return Math.max(1000, Math.min(10_000, this.#o.refreshMs));
  }

  #discover(origin: string): Promise<SessionChannel> {
    return SessionChannel.discover({ origin, identity: this.#o.identity, transport: this.#transport(origin) }, { timeoutMs: this.#timeoutMs() });
  }

  async #resolve(e: Extract<PeerEntry, { kind: 'dns' }>): Promise<void> {
    let addresses: string[];
    try {
      addresses = (await this.#lookup(e.name)).slice(0, MAX_MEMBERS);
    } catch (err) {
      // A name that does not resolve for a moment (pods restarting, DNS slow) keeps the members it had.
      this.#o.logger.warn({ peers: e.entry, err: (err as Error).message }, 'fleet: the peers name did not resolve; keeping the members found before');
      return;
    }
    const before = this.#addresses.get(e.entry) ?? new Map<string, string>();
    const now = new Map<string, string>();
    await Promise.all(
      addresses.map(async (address) => {
        const origin = addressOrigin(e, address);
        const known = before.get(origin);
        if (known !== undefined && (known === 'self' || this.#members.has(known))) return void now.set(origin, known);
        const url = await this.#ask(origin, e.entry);
        if (url !== undefined) now.set(origin, url);
      }),
    );
    this.#addresses.set(e.entry, now);
    // An address that did not answer (a pod still starting) is asked again next round, not a resolve period later.
    if (now.size < addresses.length) this.#lastResolve = 0;
    // Members found only through this name, whose address it no longer gives: gone (a pod scaled away).
    const stillNamed = new Set(now.values());
    for (const [url, m] of this.#members) if (m.via === e.entry && !stillNamed.has(url)) this.#members.delete(url);
  }

  /** Asks an address who it is; adds the member at the URL it states. Returns that URL, 'self', or undefined. */
  async #ask(origin: string, via: string): Promise<string | undefined> {
    let channel: SessionChannel;
    try {
      channel = await this.#discover(origin);
    } catch (err) {
      this.#o.logger.debug({ address: origin, err: (err as Error).message }, 'fleet: an address of the peers name did not answer');
      return undefined;
    }
    if (channel.containerId === this.#o.self.id) return 'self';
    const url = originOf(channel.info.url);
    if (!url) {
      this.#o.logger.warn({ address: origin, url: String(channel.info.url).slice(0, 80) }, 'fleet: a container at an address of the peers name states no usable URL; set its --public-url');
      return undefined;
    }
    if (!this.#members.has(url) && this.#members.size < MAX_MEMBERS) {
      // The URL is a hint, not a fact: the first poll reaches the URL itself and pins whoever answers there,
      // so an address that names another container's URL adds nothing (and cannot get that one refused).
      this.#members.set(url, { url, via, state: 'down', error: 'not asked yet', busy: false });
    }
    return url;
  }

  async #poll(m: Member): Promise<void> {
    if (m.busy || this.#closed) return;
    m.busy = true;
    try {
      if (!m.channel) {
        const channel = await this.#discover(m.url);
        if (channel.containerId === this.#o.self.id) {
          // This container's own entry in a shared peers list.
          this.#members.delete(m.url);
          return;
        }
        if (this.#o.allowedIds && !this.#o.allowedIds.includes(channel.containerId)) return this.#refuse(m, undefined, channel.containerId);
        const pinned = this.#pins.get(m.url);
        if (pinned !== undefined && pinned !== channel.containerId) return this.#refuse(m, pinned, channel.containerId);
        this.#pin(m.url, channel.containerId);
        m.containerId = channel.containerId;
        m.channel = channel;
      }
      const deadline = Date.now() + this.#timeoutMs();
      const value = await m.channel.request('load', m.channel.containerId, {}, { deadline, tenant: TENANT });
      const report = checkLoadReport(value, m.url, m.channel.containerId);
      m.load = {
        awake: report.awake, maxAwake: report.maxAwake, active: report.active, queued: report.queued,
        memoryMB: report.memoryMB, maxMemoryMB: report.maxMemoryMB, nodesLeft: report.nodesLeft,
      };
      m.at = Date.now();
      m.state = 'up';
      delete m.error;
    } catch (err) {
      // Whatever failed (the peer restarted, its session is gone, it lied), the next round starts afresh.
      m.channel = undefined;
      if (m.state !== 'refused') {
        if (m.state === 'up') this.#o.logger.warn({ peer: m.url, err: (err as Error).message }, 'fleet: a member stopped answering');
        m.state = 'down';
        m.error = isKeynodeError(err) ? `${err.code}: ${err.message}` : (err as Error).message;
      }
    } finally {
      m.busy = false;
    }
  }

  #pin(url: string, id: NodeId): void {
    if (this.#pins.has(url)) return;
    if (this.#pins.size >= MAX_PINS) {
      // Forget the oldest pin of a URL that is no longer a member (never a current member's).
      for (const u of this.#pins.keys()) {
        if (!this.#members.has(u)) {
          this.#pins.delete(u);
          break;
        }
      }
    }
    this.#pins.set(url, id);
  }

  /**
   * Whether `id` may answer at `origin`, for this container's other sessions to that peer (ctx.at, moves): false
   * for a member URL whose pinned ID, or whose configured peerIds, say otherwise; undefined for a URL that is not
   * a member's (a node may call any container its contacts allow, trusting the ID its session discovers).
   */
  admits(origin: string, id: NodeId): boolean | undefined {
    const pinned = this.#pins.get(origin);
    if (pinned !== undefined) return pinned === id;
    if (this.#members.has(origin) && this.#o.allowedIds) return this.#o.allowedIds.includes(id);
    return undefined;
  }

  /** `pinned`: the ID first met at that URL; undefined when the ID is simply not among the configured ones. */
  #refuse(m: Member, pinned: NodeId | undefined, now: NodeId): void {
    const first = m.state !== 'refused' || m.containerId !== now;
    m.state = 'refused';
    m.channel = undefined;
    m.containerId = now;
    m.error = pinned
      ? `ERR_BAD_REPLY: ${m.url} is now container ${now}, not ${pinned} as when first met; refused until this container restarts`
      : `ERR_BAD_REPLY: ${m.url} is container ${now}, which is not one of the configured peerIds`;
    if (first) {
      if (pinned) this.#o.logger.error({ peer: m.url, pinned, answered: now }, 'fleet: a peer answered with another container ID than the one pinned for its URL; refusing it');
      else this.#o.logger.error({ peer: m.url, answered: now }, 'fleet: a peer answered with a container ID that is not among the configured peerIds; refusing it');
      this.#o.onRefused?.(m.url);
    }
  }
}

