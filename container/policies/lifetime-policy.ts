/**
 * @module container/lifetime-policy
 * When nodes end without anyone asking, and what ending means:
 * - destroy: Linked and Ephemeral children first (any depth), then the process, the state, the budget share;
 * - Ephemeral: a client's holds lapse after a grace period unless renewed; a node's lapse when it sleeps or
 *   crashes without the child's ID in its refs or indexes; all of them lapse with the boot that held their keys;
 * - Resetting: state emptied after `seconds` without an eval (deadline in the store);
 * - Leased: the check runs every `seconds` as the leased node; false, or its node gone, destroys; failures
 *   retry with backoff and destroy after `leaseFailures` in a row.
 */
import { decode, encode, KeynodeError, LEASE_GRANT, type NodeId } from '../../protocol/index.js';
import { nodeRange, type NodeRecord, type Txn } from '../../store/index.js';
import { DeadlineSchedule, type Deadline } from '../../lifetimes/index.js';
import type { AwakeNode } from '../supervisor/awake-node.js';
import type { Runtime } from '../runtime.js';

/** Per-node lifetime state in the `x` sublevel: last activity (Resetting), consecutive failures (Leased). */
interface LifeState {
  last?: number;
  failures?: number;
}

const EMPTY = new Uint8Array(0);

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
  /**
   * Node-held Ephemeral children per parent, counted in memory: they all belong to this boot (their keys
   * live only in memory), so a parent missing here has none, and its sleep needs no look at its state.
   */
  readonly #ephemeralKids = new Map<NodeId, number>();
  readonly #holdTimer: NodeJS.Timeout;
  readonly #onError: (e: unknown, what: string) => void;
  readonly #events: LifetimeEvents;

  constructor(runtime: Runtime, onError: (e: unknown, what: string) => void, events: LifetimeEvents) {
    this.#rt = runtime;
    this.#onError = onError;
    this.#events = events;
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
    await this.schedule.close();
  }

  // --- spawn and eval --------------------------------------------------------------------------

  onSpawn(rec: NodeRecord, txn: Txn, now: number): void {
    const lt = rec.lifetime;
    if (lt.kind === 'resetting') {
      this.schedule.add(txn, now + lt.seconds * 1000, rec.id, 'reset');
      txn.put('x', rec.id, encode({ last: now } satisfies LifeState));
    } else if (lt.kind === 'leased') {
      this.schedule.add(txn, now + lt.seconds * 1000, rec.id, 'lease');
    } else if (lt.kind === 'ephemeral') {
      txn.put('e', `${rec.parent}${rec.id}`, EMPTY);
    }
  }

  /** `byNode`: a node parent holds its ephemeral children through its state; a client holds them by renewing. */
  afterSpawn(rec: NodeRecord, now: number, byNode: boolean): void {
    const lt = rec.lifetime;
    if (lt.kind === 'resetting' || lt.kind === 'leased') this.schedule.notify(now + lt.seconds * 1000);
    if (lt.kind === 'ephemeral' && !byNode) this.#holds.set(rec.id, { parent: rec.parent, until: now + this.#rt.options.holdGraceMs });
    if (lt.kind === 'ephemeral' && byNode) this.#ephemeralKids.set(rec.parent, (this.#ephemeralKids.get(rec.parent) ?? 0) + 1);
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
  async collectChildren(parent: NodeId): Promise<void> {
    if (!this.#ephemeralKids.has(parent)) return;
    const kids: NodeId[] = [];
    for await (const key of this.#rt.store.sub('e').keys(nodeRange(parent))) kids.push(key.slice(parent.length));
    if (!kids.length) return;
    const kept = new Set<NodeId>();
    for await (const value of this.#rt.store.stateValues(parent)) {
      const text = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1');
      for (const kid of kids) if (!kept.has(kid) && text.includes(kid)) kept.add(kid);
      if (kept.size === kids.length) return;
    }
    for (const kid of kids) if (!kept.has(kid)) await this.destroy(kid, 'ephemeral: its parent no longer holds it').catch((e) => this.#ignoreGone(e, kid));
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
    const rec = await this.#rt.lookup(id);
    await this.#destroyRecord(rec, reason);
  }

  async #destroyRecord(rec: NodeRecord, reason: string): Promise<void> {
    const rt = this.#rt;
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
        await rt.budgets.release(rec, holder, txn);
        txn.del('x', rec.id).del('e', `${rec.parent}${rec.id}`);
        await rt.store.destroyNode(rec, reason, txn);
      };
      // Under the lock of the holder that gets the share back, so its own spawns never race the credit.
      await (holder === undefined ? commit() : rt.budgets.locked(holder, commit));
      rt.ephemeralKeys.delete(rec.id);
      this.#holds.delete(rec.id);
      this.#ephemeralKids.delete(rec.id);
      const siblings = this.#ephemeralKids.get(rec.parent);
      if (rec.lifetime.kind === 'ephemeral' && siblings !== undefined) {
        if (siblings <= 1) this.#ephemeralKids.delete(rec.parent);
        else this.#ephemeralKids.set(rec.parent, siblings - 1);
      }
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

  async #due(d: Deadline): Promise<void> {
    const rt = this.#rt;
    const rec = await rt.store.getNode(d.id);
    const lt = rec?.lifetime;
    if (!rec || (d.kind === 'reset' && lt?.kind !== 'resetting') || (d.kind === 'lease' && lt?.kind !== 'leased')) {
      const txn = rt.store.txn();
      this.schedule.remove(txn, d);
      return txn.commit(); // the node is gone (or changed): its deadline goes with it
    }
    try {
      if (d.kind === 'reset') await this.#reset(rec, d);
      else await this.#lease(rec, d);
    } catch (e) {
      // Never drop a deadline on an unexpected error: try again shortly.
      this.#onError(e, `${d.kind} of ${d.id}`);
      await this.#reschedule(d, Date.now() + 1000);
    }
  }

  async #reschedule(d: Deadline, at: number, state?: LifeState): Promise<void> {
    const txn = this.#rt.store.txn();
    this.schedule.remove(txn, d);
    this.schedule.add(txn, at, d.id, d.kind);
    if (state) txn.put('x', d.id, encode(state));
    await txn.commit();
    this.schedule.notify(at);
  }

  async #state(id: NodeId): Promise<LifeState> {
    const v = await this.#rt.store.sub('x').get(id);
    return v ? (decode(v) as LifeState) : {};
  }

  async #reset(rec: NodeRecord, d: Deadline): Promise<void> {
    const period = (rec.lifetime as { seconds: number }).seconds * 1000;
    // Between evals, never during one: the reset queues on the node like an eval, without waking it.
    await this.#rt.supervisor.runTask(rec, async () => {
      const now = Date.now();
      const awake = this.#rt.supervisor.get(rec.id);
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
    try {
      // The node whose capability the check was passed down from signs it; if that node is gone, so is the check.
      const signer = lt.check.as ? await rt.lookup(lt.check.as) : rec;
      const bytes = await rt.callAs({
        from: signer,
        target: lt.check.node,
        fn: lt.check.fn,
        args: encode([]),
        // The check node's own timeoutMs bounds the check; a short lease period must not kill its worker.
        deadline: Date.now() + rt.options.maxEvalTimeoutMs,
        grant: lt.check.grant ? { name: lt.check.grantName ?? LEASE_GRANT, grant: lt.check.grant, ...(lt.check.args ? { args: lt.check.args } : {}) } : undefined,
      });
      verdict = decode(bytes) === true;
    } catch (e) {
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
