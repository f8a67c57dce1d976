/**
 * @module container/lifetime-policy
 * When nodes end without anyone asking, and what ending means:
 * - destroy: Linked and Ephemeral children first (any depth), then the process, the state, the budget share;
 * - Ephemeral: a client's holds lapse after a grace period unless renewed; a node's lapse when it sleeps or
 *   crashes without the child's ID in its refs or indexes; all of them lapse with the boot that held their keys;
 * - Resetting: state emptied after `seconds` without an eval (deadline in the store); an eval running or
 *   queued is activity, and the reset never waits for one;
 * - Leased: the check runs every `seconds` as the leased node, bounded by the leased node's
 *   sandbox.timeoutMs; false, or its node gone, destroys; failures retry with backoff and destroy after
 *   `leaseFailures` in a row.
 * Deadlines run in their tenant's lane of the schedule (see lifetimes/schedule.ts): a tenant whose checks
 * hang, or whose nodes are busy, delays only its own deadlines.
 */
import { decode, encode, KeynodeError, LEASE_GRANT, type NodeId } from '../../protocol/index.js';
import { type NodeRecord, type Txn } from '../../store/index.js';
import { DeadlineSchedule, type Deadline, type DeadlineWork } from '../../lifetimes/index.js';
import type { AwakeNode } from '../supervisor/awake-node.js';
import type { Runtime } from '../runtime.js';
import { HeldChildren } from './held-children.js';

/** Per-node lifetime state in the `x` sublevel: last activity (Resetting), consecutive failures (Leased). */
interface LifeState {
  last?: number;
  failures?: number;
  /** A Leased node's next check as scheduled: a move carries it, so the check stays due when it was. */
  due?: number;
}

const EMPTY = new Uint8Array(0);
/** Beyond the node's timeoutMs, what a deadline's own writes (a destroy, a reset of its state) may take. */
const BOUND_SLACK_MS = 2000;

/** The tenant a node lives under: the top-level principal, as for worker reuse. */
function tenantOf(rec: NodeRecord): string {
  return rec.ancestors[0] ?? rec.parent;
}

/** `p`, or a timeout after `ms`, or an abort; `p` failing later is not an unhandled rejection. */
function within<T>(p: Promise<T>, ms: number, signal: AbortSignal, message: string): Promise<T> {
  p.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', aborted);
    };
    const aborted = () => {
      done();
      reject(new KeynodeError('ERR_UNAVAILABLE', 'the container is shutting down'));
    };
    const timer = setTimeout(() => {
      done();
      reject(new KeynodeError('ERR_EVAL_TIMEOUT', message));
    }, ms);
    if (signal.aborted) return aborted();
    signal.addEventListener('abort', aborted);
    p.then(
      (v) => {
        done();
        resolve(v);
      },
      (e: unknown) => {
        done();
        reject(e);
      },
    );
  });
}

/** What the policy reports as it acts (the container re-emits these for embedders and tests). */
export interface LifetimeEvents {
  destroyed(id: NodeId, reason: string): void;
  reset(id: NodeId): void;
  leaseChecked(id: NodeId, verdict: 'renewed' | 'failed'): void;
}

export class LifetimePolicy {
  readonly #rt: Runtime;
  readonly schedule: DeadlineSchedule;
  /** Client-held Ephemeral nodes: when their hold lapses. Node-held ones are checked when the parent sleeps. */
  readonly #holds = new Map<NodeId, { parent: NodeId; until: number }>();
  /** Node-held Ephemeral children, and which of them each parent's state holds. */
  readonly held: HeldChildren;
  readonly #holdTimer: NodeJS.Timeout;
  readonly #onError: (e: unknown, what: string) => void;
  readonly #events: LifetimeEvents;
  /** Aborted at close: lease checks in flight are abandoned, their deadlines kept for the next start. */
  readonly #closing = new AbortController();

  constructor(runtime: Runtime, onError: (e: unknown, what: string) => void, events: LifetimeEvents) {
    this.#rt = runtime;
    this.#onError = onError;
    this.#events = events;
    this.held = new HeldChildren(runtime.store);
    this.schedule = new DeadlineSchedule(runtime.store, (d) => this.#due(d), (e, d) => onError(e, `deadline ${d.kind} of ${d.id}`));
    const every = Math.max(10, Math.floor(runtime.options.holdGraceMs / 4));
    this.#holdTimer = setInterval(() => this.#sweepHolds(), every).unref();
  }

  async start(): Promise<void> {
    await this.schedule.start();
    void this.#sweepStaleEphemerals().catch((e) => this.#onError(e, 'sweeping ephemeral nodes of an earlier boot'));
  }

  async close(): Promise<void> {
    clearInterval(this.#holdTimer);
    this.#closing.abort();
    await this.schedule.close();
  }

  // --- spawn and eval --------------------------------------------------------------------------

  onSpawn(rec: NodeRecord, txn: Txn, now: number): void {
    const lt = rec.lifetime;
    if (lt.kind === 'resetting') {
      this.schedule.add(txn, now + lt.seconds * 1000, rec.id, 'reset');
      txn.put('x', rec.id, encode({ last: now } satisfies LifeState));
    } else if (lt.kind === 'leased') {
      // Whole milliseconds, as the schedule's keys hold them (a move's checks want whole numbers).
      const due = Math.floor(now + lt.seconds * 1000);
      this.schedule.add(txn, due, rec.id, 'lease');
      txn.put('x', rec.id, encode({ due } satisfies LifeState));
    } else if (lt.kind === 'ephemeral') {
      txn.put('e', `${rec.parent}${rec.id}`, EMPTY);
    }
  }

  /** `byNode`: a node parent holds its ephemeral children through its state; a client holds them by renewing. */
  afterSpawn(rec: NodeRecord, now: number, byNode: boolean): void {
    const lt = rec.lifetime;
    if (lt.kind === 'resetting' || lt.kind === 'leased') this.schedule.notify(now + lt.seconds * 1000);
    if (lt.kind === 'ephemeral' && !byNode) this.#holds.set(rec.id, { parent: rec.parent, until: now + this.#rt.options.holdGraceMs });
    if (lt.kind === 'ephemeral' && byNode) this.held.add(rec.parent, rec.id);
  }

  /** A node went to sleep: a Resetting node's last activity, perhaps not written yet, is. */
  async onSleep(node: AwakeNode): Promise<void> {
    if (node.rec.lifetime.kind !== 'resetting' || node.lifeWrittenAt >= node.lastActivity) return;
    await this.#rt.store.txn().put('x', node.id, encode({ last: node.lastActivity } satisfies LifeState)).commit();
  }

  /** Called in every eval's commit: a Resetting node's clock restarts (written at most every tenth of its period). */
  onEval(node: AwakeNode, txn: Txn): void {
    const lt = node.rec.lifetime;
    if (lt.kind !== 'resetting') return;
    const now = Date.now();
    if (now - node.lifeWrittenAt < (lt.seconds * 1000) / 10) return;
    node.lifeWrittenAt = now;
    txn.put('x', node.id, encode({ last: now } satisfies LifeState));
  }

  // --- holds -----------------------------------------------------------------------------------

  /** A client renews its holds on Ephemeral nodes it spawned. Returns the IDs it no longer holds. */
  renew(from: NodeId, ids: NodeId[]): NodeId[] {
    const until = Date.now() + this.#rt.options.holdGraceMs;
    const gone: NodeId[] = [];
    for (const id of ids) {
      const hold = this.#holds.get(id);
      if (hold && hold.parent === from) hold.until = until;
      else gone.push(id);
    }
    return gone;
  }

  #sweepHolds(): void {
    const now = Date.now();
    for (const [id, hold] of this.#holds) {
      if (hold.until > now) continue;
      this.#holds.delete(id);
      void this.destroy(id, 'ephemeral: its client no longer holds it').catch((e) => this.#ignoreGone(e, id));
    }
  }

  /** After a node sleeps or crashes: its Ephemeral children whose IDs are not in its state are destroyed. */
  collectChildren(parent: NodeId): Promise<void> {
    return this.held.collect(parent, (kid) => this.destroy(kid, 'ephemeral: its parent no longer holds it').catch((e) => this.#ignoreGone(e, kid)));
  }

  /** Ephemeral nodes of an earlier boot lost their keys with it. */
  async #sweepStaleEphemerals(): Promise<void> {
    for await (const key of this.#rt.store.sub('e').keys()) {
      const id = key.slice(52);
      const rec = await this.#rt.store.getNode(id);
      if (!rec) {
        await this.#rt.store.sub('e').del(key);
        continue;
      }
      if (rec.boot !== this.#rt.bootId) await this.#destroyRecord(rec, 'ephemeral: the container restarted, and its key was only in memory');
    }
  }

  // --- destroy ---------------------------------------------------------------------------------

  async destroy(id: NodeId, reason: string): Promise<void> {
    const held = this.#rt.holds.get(id);
    if (held) await held;
    const rec = await this.#rt.lookup(id);
    await this.#destroyRecord(rec, reason);
  }

  async #destroyRecord(rec: NodeRecord, reason: string): Promise<void> {
    const rt = this.#rt;
    // A node being moved is destroyed after the move: here if it failed, else not here (it lives on elsewhere).
    const held = rt.holds.get(rec.id);
    if (held) {
      await held;
      const now = await rt.store.getNode(rec.id);
      if (!now) return;
      rec = now;
    }
    if (rt.destroying.has(rec.id)) return;
    rt.destroying.add(rec.id);
    try {
      // Spawns by this node that hold its budget lock finish first; later ones see it is being destroyed. Its
      // process ends before its children are listed, so nothing it does can add one after the list is read.
      await rt.budgets.locked(rec.id, async () => {});
      await rt.supervisor.terminate(rec.id);
      // Children that end with this node end first, so a cascade never leaves one behind.
      for await (const child of rt.store.children(rec.id)) {
        const c = await rt.store.getNode(child);
        if (c && (c.lifetime.kind === 'linked' || c.lifetime.kind === 'ephemeral')) await this.#destroyRecord(c, `${c.lifetime.kind}: its parent ${rec.id} was destroyed`);
      }
      await this.#forgetLogs(rec.id);
      const holder = await rt.budgets.creditHolder(rec);
      const commit = async () => {
        const txn = rt.store.txn();
        // Any child left (one moved in under it) keeps the tombstone too.
        const leaf = (await rt.budgets.release(rec, holder, txn)) && !(await rt.store.hasChildren(rec.id));
        txn.del('x', rec.id).del('e', `${rec.parent}${rec.id}`);
        // A node that ever had descendants keeps its tombstone for ever: its ID freed and spawned again (by
        // whoever holds its key) would be their ancestor, with an ancestor's reach and budget over them.
        await rt.store.destroyNode(rec, reason, txn, leaf);
      };
      // Under the lock of the holder that gets the share back, so its own spawns never race the credit.
      await (holder === undefined ? commit() : rt.budgets.locked(holder, commit));
      rt.ephemeralKeys.delete(rec.id);
      this.#holds.delete(rec.id);
      this.held.forget(rec.id);
      if (rec.lifetime.kind === 'ephemeral') await this.held.remove(rec.parent, rec.id);
      this.#events.destroyed(rec.id, reason);
    } finally {
      rt.destroying.delete(rec.id);
    }
  }

  /** Log lines still buffered for the node must not be written after its state is cleared. */
  #forgetLogs(id: NodeId): Promise<void> {
    return this.#rt.logs.forget(id);
  }

  #ignoreGone(e: unknown, id: NodeId): void {
    if (e instanceof KeynodeError && (e.code === 'ERR_NODE_DESTROYED' || e.code === 'ERR_NODE_NOT_FOUND')) return;
    this.#onError(e, `destroying ${id}`);
  }

  // --- deadlines -------------------------------------------------------------------------------

  /**
   * A due deadline: its node's record decides what runs, in which tenant's lane, bounded by what: the node's
   * own sandbox.timeoutMs (a lease check waits that long at most for its answer; a reset waits at most for
   * an eval that has just returned to settle).
   */
  async #due(d: Deadline): Promise<DeadlineWork | undefined> {
    const rt = this.#rt;
    const rec = await rt.store.getNode(d.id);
    const lt = rec?.lifetime;
    if (!rec || (d.kind === 'reset' && lt?.kind !== 'resetting') || (d.kind === 'lease' && lt?.kind !== 'leased')) {
      const txn = rt.store.txn();
      this.schedule.remove(txn, d);
      await txn.commit(); // the node is gone (or changed): its deadline goes with it
      return undefined;
    }
    return {
      group: tenantOf(rec),
      boundMs: rec.sandbox.timeoutMs + BOUND_SLACK_MS,
      run: async () => {
        try {
          if (d.kind === 'reset') await this.#reset(rec, d);
          else await this.#lease(rec, d);
        } catch (e) {
          if (this.#closing.signal.aborted) return; // the deadline stays for the next start
          // Never drop a deadline on an unexpected error: try again shortly.
          this.#onError(e, `${d.kind} of ${d.id}`);
          await this.#reschedule(d, Date.now() + 1000);
        }
      },
    };
  }

  async #reschedule(d: Deadline, at: number, state?: LifeState): Promise<void> {
    const txn = this.#rt.store.txn();
    this.schedule.remove(txn, d);
    this.schedule.add(txn, at, d.id, d.kind);
    if (state) txn.put('x', d.id, encode(d.kind === 'lease' ? { ...state, due: Math.floor(at) } : state));
    await txn.commit();
    this.schedule.notify(at);
  }

  async #state(id: NodeId): Promise<LifeState> {
    const v = await this.#rt.store.sub('x').get(id);
    return v ? (decode(v) as LifeState) : {};
  }

  /**
   * An eval running or waiting on the node is activity going on: the node is in use and is not reset. The
   * reset never waits for those evals (a queue of 1,024 of them, each up to its timeoutMs, would hold this
   * tenant's deadlines for hours): it moves a period on, and the period counts again from the last of them.
   */
  async #reset(rec: NodeRecord, d: Deadline): Promise<void> {
    const period = (rec.lifetime as { seconds: number }).seconds * 1000;
    const sup = this.#rt.supervisor;
    const inUse = () => {
      const awake = sup.get(rec.id);
      return awake !== undefined && (awake.running !== undefined || awake.queue.some((j) => !j.task));
    };
    if (inUse()) return this.#reschedule(d, Date.now() + period);
    // Between evals, never during one: the task runs at the node's next point between evals, ahead of any
    // eval that arrived meanwhile (see Supervisor.runTask), without waking it.
    await sup.runTask(rec, async () => {
      const now = Date.now();
      if (inUse()) return this.#reschedule(d, now + period);
      const awake = sup.get(rec.id);
      const last = Math.max((await this.#state(rec.id)).last ?? 0, awake?.worker ? awake.lastActivity : 0);
      if (now - last < period) return this.#reschedule(d, last + period);
      await this.#rt.store.resetState(await this.#rt.budgets.storageAccount(rec));
      await this.#reschedule(d, now + period, { last: now });
      this.#events.reset(rec.id);
    });
  }

  async #lease(rec: NodeRecord, d: Deadline): Promise<void> {
    const rt = this.#rt;
    const lt = rec.lifetime as Extract<NodeRecord['lifetime'], { kind: 'leased' }>;
    const period = lt.seconds * 1000;
    let verdict: boolean | 'gone' | Error;
    // The leased node's own sandbox bounds its check, wherever the check runs and however it fails to answer.
    const timeoutMs = rec.sandbox.timeoutMs;
    try {
      // The node whose capability the check was passed down from signs it; if that node is gone, so is the check.
      const signer = lt.check.as ? await rt.lookup(lt.check.as) : rec;
      const call = rt.callAs({
        from: signer,
        target: lt.check.node,
        fn: lt.check.fn,
        args: encode([]),
        deadline: Date.now() + timeoutMs,
        grant: lt.check.grant ? { name: lt.check.grantName ?? LEASE_GRANT, grant: lt.check.grant, ...(lt.check.args ? { args: lt.check.args } : {}) } : undefined,
      });
      // A check queued behind the check node's other evals is failed only when it reaches the head; this
      // lane's slot is given back at the bound instead (the queued eval then fails without running).
      verdict = decode(await within(call, timeoutMs, this.#closing.signal, `the lease check did not answer within ${timeoutMs} ms (the leased node's sandbox.timeoutMs)`)) === true;
    } catch (e) {
      if (this.#closing.signal.aborted) return; // shutting down: the deadline stays for the next start
      const code = (e as KeynodeError).code;
      verdict = code === 'ERR_NODE_NOT_FOUND' || code === 'ERR_NODE_DESTROYED' ? 'gone' : (e as Error);
    }
    if (verdict === true) {
      await this.#reschedule(d, Date.now() + period, { failures: 0 });
      return this.#events.leaseChecked(rec.id, 'renewed');
    }
    if (verdict === false || verdict === 'gone') {
      await this.#destroyRecord(rec, verdict === 'gone' ? "leased: its check's node is gone" : 'leased: its check returned false');
      return;
    }
    const failures = ((await this.#state(rec.id)).failures ?? 0) + 1;
    this.#events.leaseChecked(rec.id, 'failed');
    if (failures >= rt.options.leaseFailures) {
      await this.#destroyRecord(rec, `leased: its check failed ${failures} times in a row (${verdict.message})`);
      return;
    }
    // Back off: 1/8 of the period, doubling, never more than the period.
    const retryIn = Math.min(period, (period / 8) * 2 ** (failures - 1));
    await this.#reschedule(d, Date.now() + retryIn, { failures });
  }
}
