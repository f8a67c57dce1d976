/**
 * @module container/migration/mover
 * The source's side of a move, a small state machine persisted in the store:
 *
 *   here ──(hold evals, let those queued finish, sleep the processes)──▶ quiesced (memory only)
 *        ──(parts and records to the target, which keeps them aside durably)──▶ prepared (on the target)
 *        ──(one batch here: records gone, forwarding records `m` written, budget given back)──▶ forwarded
 *        ──(target told: it writes everything in one batch)──▶ active on the target
 *
 * Before `forwarded` commits, the node is here: a crash or a failure anywhere leaves it here with its
 * state, and the target's prepared copy is never served (it activates only the move whose forwarding record
 * the source committed). Once `forwarded` commits, the target's copy is the node: the source answers every
 * request with a redirect to it, and a target asked for it before it heard `activate` asks the source and
 * activates itself. Retrying the move finishes a forwarded one. Evals that arrive during a move wait, and
 * then run here (the move failed) or are redirected (nothing of them ran here), so none runs twice.
 */
import { randomBytes } from 'node:crypto';
import {
  boxShared, decode, encode, formatNodeUrl, KeynodeError, sealKeysShared, type NodeId,
  type DrainReport,
  type MoveResult,
} from '../../protocol/index.js';
import { childKey, ownUsageKey, usageKey, type Forward, type NodeRecord } from '../../store/index.js';
import { checkAdminister } from '../policies/access.js';
import type { LifetimePolicy } from '../policies/lifetime-policy.js';
import { movedError, type Runtime } from '../runtime.js';
import { collect, MAX_SUBTREE, subtree } from './package.js';
import type { PhaseHook } from './pause.js';

export interface MoverDeps {
  rt: Runtime;
  lifetimes: LifetimePolicy;
  peers(): string[];
  forget(id: NodeId): void;
  onPhase?: PhaseHook | undefined;
  /** How long one request of a move to the target may take. */
  requestTimeoutMs: number;
  /** Told of each move that handed nodes over (the container logs it). */
  moved?: (result: MoveResult) => void;
}

const EMPTY = new Uint8Array(0);
/** Sublevels a destroy's cleanup clears by range (store.clearNodeData). */
const RANGED_STATE = new Set(['r', 'i', 'z', 'l', 'h']);
/** Errors that say "this peer, not now": a drain tries the next peer. */
/** Nodes a drain moves in one package (sleeping top-level nodes are typically a few hundred bytes each). */
const BATCH = 64;
const TRY_ANOTHER = new Set(['ERR_BUDGET_EXHAUSTED', 'ERR_UNAVAILABLE', 'ERR_OVERLOADED', 'ERR_NOT_PEER', 'ERR_BAD_REPLY', 'ERR_TOO_LARGE']);

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

export class Mover {
  readonly #d: MoverDeps;
  readonly #moving = new Set<NodeId>();
  /** Box keys shared with each peer (one X25519 multiplication per peer, not per move). */
  readonly #shared = new Map<string, { box: string; key: Uint8Array }>();
  /** Set by a drain: new spawns are refused, since everything here is leaving. */
  draining = false;

  constructor(deps: MoverDeps) {
    this.#d = deps;
  }

  /** The target's origin, checked: a configured peer, and not this container. */
  #target(to: string): string {
    let origin: string;
    try {
      origin = new URL(to).origin;
    } catch {
      throw new KeynodeError('ERR_BAD_URL', `\`to\` must be a container's URL (http(s)://host:port), got ${JSON.stringify(String(to).slice(0, 200))}`);
    }
    if (origin === new URL(this.#d.rt.origin).origin) return origin;
    if (!this.#d.peers().includes(origin)) throw new KeynodeError('ERR_NOT_PEER', `${origin} is not one of this container's peers (--peers ${this.#d.peers().join(',') || '(none)'}); a node moves only within its fleet`);
    return origin;
  }

  /** Moves node `id` (and everything under it) to the peer at `to`, on behalf of `by` (an ancestor or the operator). */
  async move(id: NodeId, to: string, by: NodeId): Promise<MoveResult> {
    return this.#run([id], this.#target(to), by);
  }

  /**
   * Moves several nodes (none under another) with their subtrees in one package: one prepare, one
   * forwarding batch, one activation. A drain moves sleeping nodes this way; they move or stay together.
   */
  async #run(ids: NodeId[], origin: string, by: NodeId): Promise<MoveResult> {
    if (ids.some((id) => this.#moving.has(id))) throw new KeynodeError('ERR_NOT_MOVABLE', `a move of node ${ids.find((id) => this.#moving.has(id))} is under way; wait for it`);
    for (const id of ids) this.#moving.add(id);
    try {
      return await this.#move(ids, origin, by);
    } finally {
      for (const id of ids) this.#moving.delete(id);
    }
  }

  async #move(ids: NodeId[], origin: string, by: NodeId): Promise<MoveResult> {
    const { rt } = this.#d;
    const started = Date.now();
    const id = ids[0]!;
    if (ids.length === 1 && origin === new URL(rt.origin).origin) {
      // It lives there already (a retry of a move that finished, answered by its new container): done.
      checkAdminister(await rt.lookup(id), by, rt.operator);
      return { id, url: rt.urlOf(id), from: origin, to: origin, nodes: 0, bytes: 0, ms: 0 };
    }
    const fwd = ids.length === 1 ? await rt.store.getForward(id) : undefined;
    if (fwd) {
      if (by !== rt.operator && !fwd.ancestors.includes(by)) throw new KeynodeError('ERR_ACCESS_DENIED', `only an ancestor of node ${id} or the operator may do that`);
      if (new URL(fwd.url).origin !== origin) throw movedError(id, fwd.url);
      // Forwarded already: a retry after a crash or a lost answer tells the target again.
      await this.#activate(origin, fwd.move, id, fwd.url);
      return { id, url: fwd.url, from: rt.origin, to: origin, nodes: 0, bytes: 0, ms: Date.now() - started };
    }
    const tops = await Promise.all(ids.map((t) => rt.lookup(t)));
    for (const top of tops) {
      checkAdminister(top, by, rt.operator);
      if (top.lifetime.kind === 'ephemeral') throw new KeynodeError('ERR_NOT_MOVABLE', `node ${top.id} is Ephemeral: it moves only with its parent`);
    }
    const targetId = await rt.peers.containerIdOf(origin, this.#d.requestTimeoutMs);
    const hold = deferred();
    const held: NodeId[] = [];
    // The nodes moved and everything under them, each top before its subtree, the first top first.
    const forest = async (): Promise<NodeRecord[]> => {
      const out: NodeRecord[] = [];
      for (const t of ids) {
        const current = await rt.store.getNode(t);
        if (!current) throw new KeynodeError('ERR_NODE_DESTROYED', `node ${t} was destroyed while its move began`);
        out.push(...(await subtree(rt.store, current)));
        if (out.length > MAX_SUBTREE) throw new KeynodeError('ERR_NOT_MOVABLE', `a move takes at most ${MAX_SUBTREE} nodes; move fewer at once`);
      }
      return out;
    };
    try {
      // Evals that arrive from now on wait (runtime.evalOn); those queued already run and commit here.
      let nodes = await forest();
      // One move per node at a time, nested ones included: two could hand one node to two targets.
      if (nodes.some((n) => rt.holds.has(n.id))) throw new KeynodeError('ERR_NOT_MOVABLE', `node ${id}, or a node above or under it, is being moved; wait for that move`);
      for (;;) {
        for (const n of nodes) {
          if (rt.holds.has(n.id)) continue;
          rt.holds.set(n.id, hold.promise);
          held.push(n.id);
        }
        for (const n of nodes) await this.#quiesce(n.id);
        // Evals of the move's nodes may call each other (they are not held) or spawn: until all are quiet at once.
        const again = await forest();
        const quiet = again.every((r) => !rt.supervisor.get(r.id));
        const same = again.length === nodes.length && again.every((r, i) => r.id === nodes[i]!.id);
        // Read after everything is quiet: the records hold every change committed so far.
        nodes = again;
        if (quiet && same) break;
      }
      await rt.logs.flush();
      await this.#d.onPhase?.('quiesced', id);

      // Copies: the seeds are wiped once sealed, and an Ephemeral node's key must live on if the move fails.
      const seeds = nodes.map((r) => {
        if (r.sealedKey) return rt.keyring.unseal(r.id, r.sealedKey);
        const k = rt.ephemeralKeys.get(r.id);
        return k && new Uint8Array(k);
      });
      const lost = nodes.findIndex((_, i) => seeds[i] === undefined);
      if (lost >= 0) throw new KeynodeError('ERR_NOT_MOVABLE', `node ${nodes[lost]!.id} under ${id} is Ephemeral and lost its key with an earlier boot of this container`);
      const box = await rt.peers.boxKeyOf(origin, this.#d.requestTimeoutMs);
      const move = randomBytes(16).toString('hex');
      // Parts fit the target's message cap with room for the frame around them.
      const { parts, bytes } = await collect(rt.store, nodes, Math.min(4 << 20, Math.floor(rt.options.maxBodyBytes / 2)));
      const timeout = this.#d.requestTimeoutMs;
      for (const [part, entries] of parts.entries()) await rt.peers.request(origin, 'moveChunk', { move, node: id, part, entries: entries as [string, string, Uint8Array][] }, timeout);
      // Sealed by this container's own box key, with the shared key per peer computed once.
      let shared = this.#shared.get(origin);
      if (!shared || shared.box !== Buffer.from(box).toString('base64')) {
        shared = { box: Buffer.from(box).toString('base64'), key: boxShared(box, rt.keyring.box) };
        this.#shared.set(origin, shared);
      }
      const sealed = sealKeysShared(seeds as Uint8Array[], shared.key, rt.keyring.box.publicKey);
      for (const s of seeds) s!.fill(0);
      const records = nodes.map(({ sealedKey: _k, boot: _b, ...r }) => r);
      await rt.peers.request(origin, 'movePrepare', { move, node: id, parts: parts.length, records, seeds: sealed }, timeout);
      await this.#d.onPhase?.('prepared', id);

      const url = formatNodeUrl(origin, id);
      // Nodes with no entries in the ranges a destroy clears (a bare sleeping node) need no clearing after.
      const stateful = new Set(parts.flat().filter(([sub]) => RANGED_STATE.has(sub)).map(([, key]) => key.slice(0, 52)));
      await this.#forward(nodes, new Set(ids), origin, targetId, move, stateful);
      await this.#d.onPhase?.('forwarded', id);
      const result = { id, url, from: rt.origin, to: origin, nodes: nodes.length, bytes, ms: Date.now() - started };
      this.#d.moved?.(result);
      await this.#activate(origin, move, id, url);
      return { ...result, ms: Date.now() - started };
    } finally {
      for (const n of held) rt.holds.delete(n);
      hold.resolve();
    }
  }

  async #activate(origin: string, move: string, id: NodeId, url: string): Promise<void> {
    try {
      await this.#d.rt.peers.request(origin, 'moveActivate', { move, node: id }, this.#d.requestTimeoutMs);
    } catch (cause) {
      // The node is the target's now whatever happens: it activates itself when asked for it.
      throw new KeynodeError('ERR_UNAVAILABLE', `node ${id} is forwarded to ${url}, but ${origin} did not confirm it serves it (${(cause as Error).message}); it will when first asked, or retry the move`, { cause });
    }
  }

  /** Waits until the node runs nothing and has nothing queued, and puts it to sleep. */
  async #quiesce(id: NodeId): Promise<void> {
    const sup = this.#d.rt.supervisor;
    for (;;) {
      const n = sup.get(id);
      if (!n) return;
      if (n.quiet) {
        await sup.sleep(n);
        continue;
      }
      // A poll as well as the event: a task-only entry changes state without signalling.
      await Promise.race([n.changed(), new Promise((r) => setTimeout(r, 20))]);
    }
  }

  /** The commit that hands the nodes over: one batch, through the storage meter. */
  async #forward(nodes: NodeRecord[], topIds: ReadonlySet<NodeId>, origin: string, container: NodeId, move: string, stateful: ReadonlySet<string>): Promise<void> {
    const { rt, lifetimes } = this.#d;
    const tops = nodes.filter((n) => topIds.has(n.id));
    // Each top's share returns to its holder, and its subtree's bytes leave every holder above it.
    const holders = await Promise.all(tops.map((t) => rt.budgets.creditHolder(t)));
    const above = await Promise.all(tops.map(async (t) => (await rt.budgets.chain(t)).slice(1).map((l) => usageKey(l.id))));
    const at = Date.now();
    const commit = async () => {
      const t = rt.store.txn();
      const shares = new Map<NodeId, number>();
      tops.forEach((top, i) => {
        t.uncount(usageKey(top.id), above[i]!, []);
        const h = holders[i];
        if (h !== undefined) shares.set(h, (shares.get(h) ?? 0) + 1 + top.budget.maxNodes);
      });
      for (const [h, share] of shares) {
        const record = await rt.budgets.holderRecord(h);
        record.usedNodes = Math.max(0, record.usedNodes - share);
        t.put('b', h, encode(record));
      }
      // A Leased node's next check leaves with it (the target schedules it at the same time): the deadline here
      // goes in this batch. One not where the state says (rescheduled since it was read, retried after an
      // error, deferred for a full lane) stays, and finds no node when it comes due.
      const leased = nodes.filter((n) => n.lifetime.kind === 'leased');
      const states = await rt.store.getMany('x', leased.map((n) => n.id));
      leased.forEach((n, i) => {
        const due = states[i] ? (decode(states[i]!) as { due?: unknown }).due : undefined;
        if (typeof due === 'number') lifetimes.schedule.remove(t, { at: due, id: n.id, kind: 'lease' });
      });
      for (const n of nodes) {
        const fwd: Forward = { url: formatNodeUrl(origin, n.id), container, move, at, ancestors: [...n.ancestors] };
        t.del('n', n.id).del('c', childKey(n.parent, n.id)).del('x', n.id).del('b', n.id).del('s', usageKey(n.id)).del('s', ownUsageKey(n.id));
        if (n.lifetime.kind === 'ephemeral') t.del('e', `${n.parent}${n.id}`);
        t.put('m', n.id, encode(fwd));
        if (stateful.has(n.id)) t.put('g', n.id, EMPTY);
      }
      // Every node of the move is still here: none was destroyed, nor handed over by another move, meanwhile.
      for (const n of nodes) t.require('n', n.id, () => new KeynodeError('ERR_NODE_DESTROYED', `node ${n.id} was destroyed or moved during its move`));
      await t.commit();
    };
    // Under the lock of every holder that gets a share back (in one order, so two moves never deadlock).
    const locks = [...new Set(holders.filter((h): h is NodeId => h !== undefined))].sort();
    await locks.reduceRight<() => Promise<void>>((inner, h) => () => rt.budgets.locked(h, inner), commit)();
    for (const n of nodes) {
      this.#d.forget(n.id);
      rt.ephemeralKeys.delete(n.id);
      lifetimes.held.forget(n.id);
      await rt.logs.forget(n.id);
    }
    for (const n of nodes) if (stateful.has(n.id)) await rt.store.clearNodeData(n.id);
  }

  /**
   * Moves every node off this container to its peers, a subtree at a time (`concurrency` at once), each to
   * the next peer in turn that has room; then reports. New spawns are refused from the start.
   */
  async drain(by: NodeId, concurrency = 8): Promise<DrainReport> {
    const { rt } = this.#d;
    const peers = this.#d.peers();
    if (!peers.length) throw new KeynodeError('ERR_NOT_PEER', 'this container has no peers to drain to (--peers)');
    this.draining = true;
    const started = Date.now();
    const report: DrainReport = { moved: 0, nodes: 0, failed: [], ephemeral: 0, peers: Object.fromEntries(peers.map((p) => [p, 0])), ms: 0, nodesPerSecond: 0 };
    let next = 0;
    let after: NodeId | undefined;
    const page: NodeRecord[] = [];
    let done = false;
    // One page read at a time, shared by the workers waiting for it (each node is taken once).
    let reading: Promise<void> | undefined;
    const take = async (): Promise<NodeRecord | undefined> => {
      for (;;) {
        if (page.length) return page.shift();
        if (done) return undefined;
        reading ??= rt.store.listNodes(after, 1000).then((batch) => {
          if (batch.length < 1000) done = true;
          if (batch.length) after = batch.at(-1)!.id;
          page.push(...batch);
          reading = undefined;
        });
        await reading;
      }
    };
    const moveOne = async (rec: NodeRecord) => {
      let last: KeynodeError | undefined;
      for (let i = 0; i < peers.length; i++) {
        const peer = peers[(next++ + i) % peers.length]!;
        try {
          const r = await this.move(rec.id, peer, by);
          report.moved++;
          report.nodes += r.nodes;
          report.peers[peer] = (report.peers[peer] ?? 0) + r.nodes;
          return;
        } catch (e) {
          last = e instanceof KeynodeError ? e : new KeynodeError('ERR_INTERNAL', String(e));
          if (await rt.store.getForward(rec.id)) {
            // Forwarded: the node is the target's now, which activates it when first asked if not before.
            report.moved++;
            report.nodes++;
            return;
          }
          if (!TRY_ANOTHER.has(last.code)) break;
        }
      }
      if (last) report.failed.push({ id: rec.id, code: last.code, message: last.message });
    };
    const worker = async () => {
      for (;;) {
        // Up to BATCH nodes of one parent (so of one budget holder) that are not under a node here.
        const batch: NodeRecord[] = [];
        for (let rec = await take(); rec; rec = batch.length < BATCH ? await take() : undefined) {
          const [self, parent] = await rt.store.getMany('n', [rec.id, rec.parent]);
          // A node under another node here moves with it; one already gone moved with its parent.
          if (!self || parent) continue;
          // Held by a client: it ends with this container's boot, wherever its key would go, so it stays.
          if (rec.lifetime.kind === 'ephemeral') {
            report.ephemeral++;
            continue;
          }
          if (batch.length && batch[0]!.parent !== rec.parent) {
            await moveOne(rec);
            continue;
          }
          batch.push(rec);
        }
        if (!batch.length) return;
        if (batch.length === 1) {
          await moveOne(batch[0]!);
          continue;
        }
        const peer = peers[next++ % peers.length]!;
        try {
          const r = await this.#run(batch.map((b) => b.id), peer, by);
          report.moved += batch.length;
          report.nodes += r.nodes;
          report.peers[peer] = (report.peers[peer] ?? 0) + r.nodes;
        } catch {
          // Together or not at all: a batch that did not move goes one by one, each to whichever peer has room.
          if (await rt.store.getForward(batch[0]!.id)) {
            report.moved += batch.length;
            report.nodes += batch.length;
          } else for (const rec of batch) await moveOne(rec);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(64, concurrency)) }, worker));
    report.ms = Date.now() - started;
    report.nodesPerSecond = report.ms ? Math.round((report.nodes * 1000) / report.ms) : report.nodes;
    return report;
  }
}
