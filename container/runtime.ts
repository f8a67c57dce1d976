/**
 * @module container/runtime
 * The operations on nodes, whoever asks: a client over HTTP, a node through ctx, a peer container, the
 * lifetime scheduler. lookup → policy checks → supervisor → worker → store, and back.
 */
import type { KeyObject } from 'node:crypto';
import {
  codeHash, concatArrays, formatNodeUrl, keyPairFromSeed, KeynodeError, parseNodeUrl, redirectTarget, resolveNode, signBytes, verifyGrant,
  type NodeId, type NodeInfo, type PolicyLimits,
} from '../protocol/index.js';
import type { NodeRecord, Store } from '../store/index.js';
import { checkEval, mayEval } from './policies/access.js';
import type { AwakeNode } from './supervisor/awake-node.js';
import type { Budgets } from './policies/budgets.js';
import type { StorageQuota } from './policies/storage.js';
import type { ContainerOptions } from './config.js';
import type { Keyring } from './keyring.js';
import type { LogBook } from './logbook.js';
import type { RemotePeers } from './edge/remote.js';
import { PeerSessions } from './edge/peer-sessions.js';
import type { Supervisor } from './supervisor/supervisor.js';

export interface EvalOptions {
  deadline?: number;
  chain?: NodeId[];
  /** The sender presented a valid grant for exactly this function: the target's ACL does not apply. */
  granted?: boolean;
  /** SHA-256 of `fn` (hex), when the caller has it already. */
  hash?: string;
}

/** A call made on a node's behalf (ctx.at, a capability, a lease check). */
export interface CallAs {
  /** The principal the call is signed as. */
  from: NodeRecord;
  target: string;
  fn: string;
  args: Uint8Array;
  deadline: number;
  chain?: NodeId[];
  grant?: { name: string; grant: Uint8Array; args?: Uint8Array };
  /**
   * Whether the target is on this container, as the caller's contact check decided: the first hop goes
   * where that check assumed, even if the answer changed since (a tombstone expired, a node moved away).
   */
  local?: boolean;
}

export class Runtime {
  readonly bootId = Date.now();
  readonly limits: PolicyLimits;
  readonly options: ContainerOptions;
  readonly store: Store;
  readonly keyring: Keyring;
  readonly logs: LogBook;
  readonly #remote: RemotePeers;
  readonly origin: string;
  supervisor!: Supervisor;
  budgets!: Budgets;
  storage!: StorageQuota;
  /** Worker processes that serve no node, and where wakes got theirs (set by the container). */
  fleet: () => { spares: number; blanks: number; starting: number; counts: Record<string, number> } = () => ({ spares: 0, blanks: 0, starting: 0, counts: {} });
  /** Ends a node (cascades, budget, store); set by the container to the lifetime policy's destroy. */
  destroy!: (id: NodeId, reason: string) => Promise<void>;
  readonly #loading = new Map<NodeId, Promise<NodeRecord>>();
  /** Loads in flight whose record changed meanwhile: they may have read the old one, so they read again. */
  readonly #reread = new Set<NodeId>();
  readonly destroying = new Set<NodeId>();
  /** Seeds of Ephemeral nodes: their keys are never written to disk. */
  readonly ephemeralKeys = new Map<NodeId, Uint8Array>();
  /** Sessions with peer containers, for calls this container's nodes make to nodes there. */
  readonly peers: PeerSessions;
  /** Nodes being moved: evals and changes that arrive for them wait for the move's outcome (migration/mover). */
  readonly holds = new Map<NodeId, Promise<void>>();
  readonly #waitingForMove = new Map<NodeId, number>();
  /**
   * Where a node unknown here lives in the fleet, when some peer knows (migration/locator), after a move of
   * it prepared here has had its chance to activate; set by the container.
   */
  locate: (id: NodeId) => Promise<string | undefined> = async () => undefined;
  /** Origins of the other members of this container's fleet (migration/peers); set by the container. */
  peerOrigins: () => string[] = () => [];
  /** Tombstones removed since this process started (store/tombstones.ts). */
  tombstonesExpired: () => number = () => 0;

  constructor(o: ContainerOptions, store: Store, keyring: Keyring, logs: LogBook, remote: RemotePeers, origin: string) {
    this.options = o;
    this.store = store;
    this.keyring = keyring;
    this.logs = logs;
    this.#remote = remote;
    this.peers = new PeerSessions(keyring.operator, remote);
    this.origin = origin;
    this.limits = {
      defaultMemoryMB: o.memoryMB,
      maxMemoryMB: o.maxMemoryMB,
      defaultTimeoutMs: o.evalTimeoutMs,
      maxTimeoutMs: o.maxEvalTimeoutMs,
      defaultMaxMessageBytes: o.maxMessageBytes,
      maxMessageBytes: o.maxBodyBytes,
      minPeriodSeconds: o.minPeriodMs / 1000,
    };
  }

  get operator(): NodeId {
    return this.keyring.operator.id;
  }

  urlOf(id: NodeId): string {
    return formatNodeUrl(this.origin, id);
  }

  // --- lookup ----------------------------------------------------------------------------------

  /** The node's record: from the status map if awake, else one store read shared by concurrent callers. */
  lookup(id: NodeId): Promise<NodeRecord> {
    if (this.destroying.has(id)) return Promise.reject(destroyedError(id));
    const awake = this.supervisor.get(id);
    if (awake && !awake.destroyed) return Promise.resolve(awake.rec);
    let p = this.#loading.get(id);
    if (!p) {
      p = this.#load(id);
      this.#loading.set(id, p);
      const done = () => this.#loading.delete(id);
      p.then(done, done);
    }
    return p;
  }

  /** The record, or undefined when there is no such node (or it is a principal, not a node). */
  find(id: NodeId): Promise<NodeRecord | undefined> {
    return this.lookup(id).catch(() => undefined);
  }

  async #load(id: NodeId): Promise<NodeRecord> {
    let rec: NodeRecord | undefined;
    do {
      this.#reread.delete(id);
      rec = await this.store.getNode(id);
    } while (this.#reread.has(id));
    // An Ephemeral node of an earlier boot lost its key with that boot: it is as good as destroyed.
    if (rec && !this.destroying.has(id) && (rec.lifetime.kind !== 'ephemeral' || rec.boot === this.bootId)) return rec;
    if (rec || (await this.store.getTombstone(id))) throw destroyedError(id);
    const moved = await this.store.getForward(id);
    if (moved) throw movedError(id, moved.url);
    throw new KeynodeError('ERR_NODE_NOT_FOUND', `no node ${id} on this container`);
  }

  /**
   * A node's record was rewritten (its ACL or sandbox changed) and committed. Everything that decides from
   * it sees the new one: the awake entry, and a load that was reading the old one (an eval it serves would
   * otherwise wake the node with the old ACL, and keep it for the whole wake).
   */
  recordChanged(rec: NodeRecord): void {
    if (this.#loading.has(rec.id)) this.#reread.add(rec.id);
    this.supervisor.refresh(rec);
  }

  /** The node's private key, for signing on its behalf. Held in memory only while needed. */
  keyOf(rec: NodeRecord, awake?: AwakeNode): KeyObject {
    if (awake?.key) return awake.key;
    const seed = rec.sealedKey ? this.keyring.unseal(rec.id, rec.sealedKey) : this.ephemeralKeys.get(rec.id);
    if (!seed) throw destroyedError(rec.id);
    const key = keyPairFromSeed(seed).privateKey;
    if (awake) awake.key = key;
    return key;
  }

  // --- eval ------------------------------------------------------------------------------------

  async evalOn(id: NodeId, from: NodeId, fn: string, args: Uint8Array, options: EvalOptions = {}): Promise<Uint8Array> {
    // The chain may come from another container: a call back into a node waiting on it would deadlock.
    if (options.chain?.includes(id)) throw cycleError(id);
    // A node being moved: the eval runs here if the move fails, or is redirected having run nowhere.
    // A call between two nodes of the same move runs now: the move waits for it (and would wait forever).
    let rec: NodeRecord;
    for (;;) {
      const held = this.holds.get(id);
      if (held && this.holds.get(from) !== held) await this.#waitForMove(id, held);
      rec = await this.lookup(id);
      // A move that began while the record was read must see this eval queued, or not at all: from here to
      // the submit below nothing waits, so the move's check that the node is quiet cannot miss it.
      const now = this.holds.get(id);
      if (!now || this.holds.get(from) === now) break;
    }
    if (!options.granted) checkEval(rec, from);
    const size = Buffer.byteLength(fn, 'utf8') + args.length;
    if (size > rec.sandbox.maxMessageBytes) {
      throw new KeynodeError('ERR_TOO_LARGE', `the eval is ${size} bytes; node ${id} accepts at most ${rec.sandbox.maxMessageBytes} (sandbox.maxMessageBytes)`);
    }
    // Checked again when the eval starts, against the ACL then. A grant is not: it is the target's signature
    // and cannot be withdrawn (see README, security).
    const admit = options.granted ? undefined : (now: NodeRecord) => {
      if (!mayEval(now, from)) throw new KeynodeError('ERR_ACCESS_DENIED', `principal ${from} was removed from the access list of node ${id} while its eval waited; it did not run`);
    };
    const h = options.hash ?? codeHash(fn);
    return new Promise((resolve, reject) => this.supervisor.submit(rec, { fn, h, args, from, deadline: options.deadline, chain: options.chain, admit, resolve, reject }));
  }

  /** Evals waiting for a move of their node are bounded as its queue is: a flood is refused, not held. */
  async #waitForMove(id: NodeId, held: Promise<void>): Promise<void> {
    const n = this.#waitingForMove.get(id) ?? 0;
    if (n >= this.options.maxQueue) throw new KeynodeError('ERR_OVERLOADED', `node ${id} is moving and ${n} evals wait for it already; retry later`);
    this.#waitingForMove.set(id, n + 1);
    try {
      await held;
    } finally {
      const left = this.#waitingForMove.get(id)! - 1;
      if (left) this.#waitingForMove.set(id, left);
      else this.#waitingForMove.delete(id);
    }
  }

  /**
   * An eval that arrived with a grant (a capability or lease check): valid only for exactly that function and
   * its bound arguments, which go before the caller's own.
   */
  evalGranted(id: NodeId, from: NodeId, fn: string, args: Uint8Array, cap: { name?: unknown; grant?: unknown; args?: unknown }, options: EvalOptions = {}): Promise<Uint8Array> {
    const bound = cap.args === undefined ? undefined : cap.args instanceof Uint8Array ? cap.args : null;
    if (typeof cap.name !== 'string' || !(cap.grant instanceof Uint8Array) || bound === null || !verifyGrant(id, from, cap.name, fn, cap.grant, bound)) {
      throw new KeynodeError('ERR_ACCESS_DENIED', `the grant presented by ${from} does not verify for this function on node ${id}`);
    }
    return this.evalOn(id, from, fn, bound ? concatArrays(bound, args) : args, { ...options, granted: true });
  }

  /**
   * A call on a node's behalf: delivered in-process when the target lives here (this container already
   * knows who the caller is), else sent in this container's session with the target's container, as the
   * caller (proved once per session by the caller's key), with the chain of nodes waiting on it.
   */
  async callAs(call: CallAs): Promise<Uint8Array> {
    const { id, url: first } = resolveNode(call.target);
    const chain = call.chain ?? [];
    if (chain.includes(id)) throw cycleError(id);
    // A node that moved answers with a redirect (authenticated): followed to the same node, a bounded number of times.
    const seen = new Set([first ? parseNodeUrl(first).origin : this.origin]);
    let local = call.local;
    for (let url = first; ;) {
      try {
        return await this.#callOnce(call, id, url, chain, local);
      } catch (e) {
        const next = redirectTarget(e, id, seen);
        if (next === undefined) throw e;
        url = next;
        local = undefined;
      }
    }
  }

  async #callOnce(call: CallAs, id: NodeId, url: string | undefined, chain: NodeId[], local: boolean | undefined): Promise<Uint8Array> {
    if (local ?? (await this.isLocal(id, url))) {
      const args = call.grant?.args ? concatArrays(call.grant.args, call.args) : call.args;
      try {
        return await this.evalOn(id, call.from.id, call.fn, args, { deadline: call.deadline, chain, granted: call.grant !== undefined });
      } catch (e) {
        // A fleet URL naming this container for a node that lives on another.
        if (!(e instanceof KeynodeError) || e.code !== 'ERR_NODE_NOT_FOUND') throw e;
        const elsewhere = await this.locate(id);
        if (elsewhere === undefined) throw e;
        throw movedError(id, elsewhere);
      }
    }
    if (!url) {
      const moved = await this.store.getForward(id);
      if (moved) throw movedError(id, moved.url);
      throw new KeynodeError('ERR_NODE_NOT_FOUND', `no node ${id} on this container; call it by URL`);
    }
    const key = this.keyOf(call.from, this.supervisor.get(call.from.id));
    const extra = { ...(call.grant ? { cap: call.grant } : {}), ...(chain.length ? { chain } : {}) };
    // Sockets to a peer are shared per tenant: the signer is the node the call is for or an ancestor that
    // passed it a capability, so its top-level principal is that node's tenant (as for worker reuse).
    const tenant = call.from.ancestors[0] ?? call.from.id;
    return this.peers.eval(url, { id: call.from.id, sign: (m) => signBytes(key, m) }, id, call.fn, codeHash(call.fn), call.args, extra, Math.max(1, call.deadline - Date.now()), tenant);
  }

  /** True when the node lives (or lived) here, or its URL names this container. */
  async isLocal(id: NodeId, url?: string): Promise<boolean> {
    if (this.supervisor.get(id) || url?.startsWith(`${this.origin}/`)) return true;
    return this.store.knows(id);
  }

  // --- reading ---------------------------------------------------------------------------------

  info(rec: NodeRecord): NodeInfo {
    const awake = this.supervisor.get(rec.id);
    const info: NodeInfo = {
      id: rec.id,
      url: this.urlOf(rec.id),
      status: awake && awake.worker ? awake.publicStatus : 'asleep',
      lifetime: rec.lifetime.kind === 'leased' ? { kind: 'leased', seconds: rec.lifetime.seconds, check: { node: rec.lifetime.check.node, fn: rec.lifetime.check.fn } } : rec.lifetime,
      parent: rec.parent,
      sandbox: { ...rec.sandbox, capabilities: Object.fromEntries(Object.entries(rec.sandbox.capabilities).map(([k, c]) => [k, { node: c.node, fn: c.fn }])) },
      acl: rec.acl,
      budget: rec.budget,
      createdAt: rec.createdAt,
    };
    if (awake?.worker) {
      info.pid = awake.worker.pid;
      info.lastActivity = awake.lastActivity;
      info.memoryMB = awake.grantedMB;
      info.uptimeMs = Date.now() - awake.wokenAt;
    }
    return info;
  }

  async list(after: NodeId | undefined, limit: number): Promise<NodeInfo[]> {
    return (await this.store.listNodes(after, limit)).map((rec) => this.info(rec));
  }

  stats(): Record<string, number> {
    let queued = 0;
    let active = 0;
    for (const n of this.supervisor.nodes()) {
      queued += n.queue.length;
      if (n.running) active++;
    }
    const fleet = this.fleet();
    const { spare = 0, steal = 0, blank = 0, new: fresh = 0, retired = 0 } = fleet.counts;
    const peers = this.#remote.counts();
    return {
      awake: this.supervisor.size, active, queued, wakes: this.supervisor.wakes, uptimeMs: Date.now() - this.bootId,
      peerCallsInFlight: peers.active, peerCallsWaiting: peers.waiting,
      spareWorkers: fleet.spares, blankWorkers: fleet.blanks, startingWorkers: fleet.starting,
      wakesFromSpare: spare, wakesFromSteal: steal, wakesFromBlank: blank, wakesFromNewProcess: fresh, retiredWorkers: retired,
      tombstonesExpired: this.tombstonesExpired(),
    };
  }
}

function cycleError(id: NodeId): KeynodeError {
  return new KeynodeError('ERR_CYCLE', `node ${id} is waiting on this call chain already; a node runs one eval at a time, so calling back into it would deadlock`);
}

/** The authenticated redirect a request for a node that moved gets: clients follow `location`. */
export function movedError(id: NodeId, url: string): KeynodeError {
  return new KeynodeError('ERR_MOVED', `node ${id} moved to ${url}`, { location: url });
}

export function destroyedError(id: NodeId): KeynodeError {
  return new KeynodeError('ERR_NODE_DESTROYED', `node ${id} was destroyed`);
}
