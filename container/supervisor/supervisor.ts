/**
 * @module container/supervisor/supervisor
 * The status map and every node's hold on a worker: wake on the first message (one wake however many
 * arrive), one eval at a time in arrival order, sleep after the idle timeout, kill on crash, timeout or
 * memory overrun. Sleeping nodes are not here at all; a single sweep timer serves every awake node.
 *
 * A node that sleeps gives its worker back scrubbed (`release`), for the next node of its tenant. A wake
 * takes, in this order: a spare of its tenant, the worker of the tenant's least recently used idle node
 * that is not hot (see #victim), a blank from the pool, a new process.
 */
import { KeynodeError, type ErrorCode, type FromWorker, type NodeId, type ToWorker, type WireError, type WorkerRequest, type Write } from '../../protocol/index.js';
import { AwakeNode, type Job, type Task } from './awake-node.js';
import type { Fleet } from '../fleet/fleet.js';
import type { WorkerExit, WorkerProcess } from '../fleet/worker-process.js';
import type { NodeRecord } from '../../store/index.js';
import { workerNodeOf } from '../fleet/worker-node.js';
import { fitError, requestTooLarge, resultTooLarge } from '../fleet/frame-bounds.js';
import { watchMemory } from './memory-watch.js';

export interface SupervisorHooks {
  /** Before a process starts: reserve budget; may sleep other nodes to make room. Returns the memory grant. */
  beforeWake(node: AwakeNode): Promise<number>;
  /** Gives back what beforeWake reserved (called exactly once per successful beforeWake). */
  release(node: AwakeNode): void;
  /** After the node is awake (key loaded, process ready). */
  afterWake?(node: AwakeNode): void;
  /** A request the node's code makes through ctx. */
  onRequest(node: AwakeNode, req: WorkerRequest): Promise<unknown>;
  /** Commits an eval's writes; throwing fails the eval and discards them. */
  onCommit(node: AwakeNode, writes: readonly Write[]): Promise<void>;
  onLog(node: AwakeNode, line: string): void;
  /** The node has no process any more (slept, crashed idle, destroyed). */
  onAsleep(node: AwakeNode, why: 'idle' | 'crash' | 'destroyed' | 'shutdown'): void;
  publicUrl(id: NodeId): string;
}

export interface SupervisorOptions {
  idleTimeoutMs: number;
  rssOverheadMB: number;
  memoryPollMs: number;
  maxQueue: number;
  /** Bytes of evals (source + arguments) that may wait for one node. */
  maxQueueBytes: number;
  /** How long a worker may take to forget its node before it is killed instead. */
  releaseTimeoutMs: number;
}

const MAX_REQUESTS_IN_FLIGHT = 64;
/**
 * A node is hot when it ran more than one eval in this wake, or when it was put to sleep early (its worker
 * taken) less than GHOST_MS before this wake: it came back, so it is in use. A hot node's worker is taken for
 * another node only after it has been idle HOT_IDLE_MS. A node woken for one eval (a scan of distinct
 * nodes) gives way at once, so a burst of cold wakes recycles among itself, and a working set of hot nodes
 * larger than the processes holding it makes the container start processes until it fits (within the
 * budgets) instead of passing workers around.
 */
const HOT_IDLE_MS = 1000;
const GHOST_MS = 10_000;
/** Nodes remembered as put to sleep early (the "ghost" list of 2Q caching): a bounded, oldest-first map. */
const MAX_GHOSTS = 10_000;

const EXIT_MESSAGES: Partial<Record<ErrorCode, string>> = {
  ERR_EVAL_TIMEOUT: 'the eval ran past its time limit (sandbox.timeoutMs); its worker was killed and the node is asleep',
  ERR_OUT_OF_MEMORY: "the node's worker passed its memory grant (sandbox.memoryMB) and was killed; the node is asleep",
  ERR_WORKER_CRASHED: "the node's worker died during the eval; the node is asleep and wakes on its next message",
  ERR_NODE_DESTROYED: 'the node was destroyed',
  ERR_UNAVAILABLE: 'the container is shutting down',
};

/** Worker functions kept in the container's guess of each worker's cache (the worker keeps more). */
const CODE_GUESS = 128;

/** The eval frame: the function by hash when this wake's worker has compiled it, else with its source. */
function evalFrame(node: AwakeNode, job: Job, id: number): Extract<ToWorker, { type: 'eval' }> {
  if (!job.withSource && node.code.has(job.h)) return { type: 'eval', id, h: job.h, args: job.args, from: job.from };
  if (node.code.size >= CODE_GUESS) node.code.delete(node.code.values().next().value!);
  node.code.add(job.h);
  return { type: 'eval', id, h: job.h, fn: job.fn, args: job.args, from: job.from };
}

export class Supervisor {
  readonly #awake = new Map<NodeId, AwakeNode>();
  readonly #hooks: SupervisorHooks;
  readonly #options: SupervisorOptions;
  readonly #fleet: Fleet;
  readonly #sweepTimer: NodeJS.Timeout;
  readonly #memoryTimer: NodeJS.Timeout;
  #closing = false;
  readonly #ghosts = new Map<NodeId, number>();
  wakes = 0;

  constructor(options: SupervisorOptions, fleet: Fleet, hooks: SupervisorHooks) {
    this.#options = options;
    this.#fleet = fleet;
    this.#hooks = hooks;
    const sweepEvery = Math.max(10, Math.min(1000, Math.floor(options.idleTimeoutMs / 4)));
    this.#sweepTimer = setInterval(() => this.#sweep(), sweepEvery).unref();
    this.#memoryTimer = setInterval(() => watchMemory(this.#awake.values(), options.memoryPollMs, options.rssOverheadMB), options.memoryPollMs).unref();
  }

  get(id: NodeId): AwakeNode | undefined {
    return this.#awake.get(id);
  }

  get size(): number {
    return this.#awake.size;
  }

  nodes(): IterableIterator<AwakeNode> {
    return this.#awake.values();
  }

  /** Queues an eval on the node, waking it if it sleeps. */
  submit(rec: NodeRecord, job: Job): void {
    if (this.#closing) return job.reject(new KeynodeError('ERR_UNAVAILABLE', EXIT_MESSAGES.ERR_UNAVAILABLE!));
    let node = this.#awake.get(rec.id);
    if (!node) {
      node = new AwakeNode(rec);
      this.#awake.set(rec.id, node);
    }
    const bytes = job.fn.length + job.args.length;
    if (node.queue.length >= this.#options.maxQueue || node.queuedBytes + bytes > this.#options.maxQueueBytes) {
      return job.reject(new KeynodeError('ERR_OVERLOADED', `node ${rec.id} has ${node.queue.length} evals (${node.queuedBytes} bytes) waiting; retry later`));
    }
    node.queuedBytes += bytes;
    node.queue.push(job);
    this.#pump(node);
  }

  /** A node's policies changed: the awake entry and its worker see the new ones from the next eval on. */
  refresh(rec: NodeRecord): void {
    const node = this.#awake.get(rec.id);
    if (!node) return;
    const wasShared = node.worker !== undefined && node.worker.served > 1;
    node.rec = rec;
    // A worker being released is forgetting this node: the next wake tells its worker the new policies.
    if (node.status !== 'stopping' && node.status !== 'waking') node.worker?.send({ type: 'become', node: workerNodeOf(rec, this.#hooks.publicUrl(rec.id)) });
    // Now 'process' on a worker that served others before: it moves to a fresh one at its next quiet moment.
    if (wasShared && this.#scopeOf(node) === undefined) {
      node.moveOut = true;
      if (node.quiet) void this.sleep(node);
    }
  }

  /** The tenant whose spare workers this node may use and leave behind; undefined: a process of its own. */
  #scopeOf(node: AwakeNode): string | undefined {
    if (this.#fleet.reuse === 'off' || node.rec.sandbox.isolation === 'process') return undefined;
    return node.rec.ancestors[0];
  }

  /** Counts the Running evals: refills of the blank pool wait while they fill every core. */
  get running(): number {
    let n = 0;
    for (const node of this.#awake.values()) if (node.running) n++;
    return n;
  }

  /**
   * Runs `task` on the node's state when no eval is running on it, without waking it: at the next point
   * between evals, ahead of the evals queued (a task must not wait behind a queue of 1,024 evals; it sees
   * them waiting and decides). Tasks keep their order among themselves.
   */
  runTask(rec: NodeRecord, task: () => Promise<void>): Promise<void> {
    return new Promise((resolve, reject) => {
      let node = this.#awake.get(rec.id);
      if (!node) {
        node = new AwakeNode(rec);
        this.#awake.set(rec.id, node);
      }
      const firstEval = node.queue.findIndex((j) => !j.task);
      node.queue.splice(firstEval < 0 ? node.queue.length : firstEval, 0, { task, resolve, reject });
      this.#pump(node);
    });
  }

  async #runTask(node: AwakeNode, t: Task): Promise<void> {
    const before = node.status;
    node.status = 'committing';
    try {
      await t.task();
      t.resolve();
    } catch (e) {
      t.reject(e);
    }
    if (node.status === 'committing') node.status = before === 'asleep' ? 'asleep' : 'idle';
    // A graceful shutdown that found the node 'committing' waits for this as for an eval's outcome.
    for (const settled of node.settled.splice(0)) settled();
    if (!node.worker && !node.queue.length) return this.#forget(node, 'idle');
    this.#pump(node);
  }

  #pump(node: AwakeNode): void {
    if (node.running || node.settling || node.destroyed || node.status === 'waking' || node.status === 'committing' || node.status === 'stopping') return;
    const head = node.queue[0];
    if (head?.task) {
      node.queue.shift();
      void this.#runTask(node, head);
      return;
    }
    if (!node.worker) {
      if (node.queue.length) void this.#wake(node);
      return;
    }
    const job = node.queue.shift() as Job | undefined;
    if (!job) return;
    node.queuedBytes -= job.fn.length + job.args.length;
    try {
      job.admit?.(node.rec); // against the node's policies now: access revoked while the eval waited applies to it
    } catch (e) {
      job.reject(e instanceof KeynodeError ? e : new KeynodeError('ERR_ACCESS_DENIED', String(e)));
      return this.#pump(node);
    }
    const remaining = job.deadline === undefined ? Infinity : job.deadline - Date.now();
    if (remaining <= 0) {
      job.reject(new KeynodeError('ERR_EVAL_TIMEOUT', 'the calling eval ran out of time before this one could start'));
      return this.#pump(node);
    }
    const evalId = node.nextEvalId();
    const limit = Math.min(node.rec.sandbox.timeoutMs, remaining);
    const worker = node.worker;
    const timer = setTimeout(() => worker.kill('ERR_EVAL_TIMEOUT'), limit);
    const running: NonNullable<AwakeNode['running']> = { job, evalId, timer, deadline: Date.now() + limit };
    node.running = running;
    node.evals++;
    node.status = 'active';
    node.lastActivity = Date.now();
    running.ticket = worker.sendEval(evalFrame(node, job, evalId));
  }

  async #wake(node: AwakeNode): Promise<void> {
    node.status = 'waking';
    let worker: WorkerProcess;
    try {
      node.grantedMB = await this.#hooks.beforeWake(node);
      node.wasAwake = true;
      node.reserved = true;
      if (node.destroyed) return this.#forget(node, 'destroyed');
      worker = await this.#acquire(node);
      if (node.destroyed || this.#closing) {
        this.#fleet.retire(worker);
        return this.#forget(node, node.destroyed ? 'destroyed' : 'shutdown');
      }
      this.#attach(node, worker);
      await worker.ready;
    } catch (e) {
      const err = node.destroyed
        ? new KeynodeError('ERR_NODE_DESTROYED', EXIT_MESSAGES.ERR_NODE_DESTROYED!)
        : e instanceof KeynodeError ? e : new KeynodeError('ERR_UNAVAILABLE', `could not wake node ${node.id}: ${(e as Error).message}`);
      // Nothing ran, so every waiting eval fails the same way; the node stays asleep.
      for (const job of node.queue.splice(0)) job.reject(err);
      if (!node.worker) this.#forget(node, 'crash');
      return;
    }
    if (node.destroyed || !worker.alive || node.worker !== worker) return;
    this.wakes++;
    node.code.clear(); // a new Compartment: nothing compiled yet
    worker.send({ type: 'become', node: workerNodeOf(node.rec, this.#hooks.publicUrl(node.id)) });
    node.wokenAt = Date.now();
    node.evals = 0;
    const ghost = this.#ghosts.get(node.id);
    node.returned = ghost !== undefined && node.wokenAt - ghost < GHOST_MS;
    if (ghost !== undefined) this.#ghosts.delete(node.id);
    node.status = 'idle';
    node.signal();
    this.#hooks.afterWake?.(node);
    this.#pump(node);
  }

  /**
   * A worker for the node, cheapest first: a spare of its tenant (a frame), a cold idle neighbour's (it
   * sleeps early: a frame each way), a ready blank (a frame, and a refill later), a blank still starting or a
   * new process (~100 ms of CPU) while fewer than `maxStarts` start. Only when none of these exists does the
   * wake wait, for the next worker to come free or start.
   */
  async #acquire(node: AwakeNode): Promise<WorkerProcess> {
    const scope = this.#scopeOf(node);
    const mb = node.grantedMB;
    for (;;) {
      const spare = scope === undefined ? undefined : this.#fleet.takeSpare(scope, mb);
      if (spare) {
        node.source = 'spare';
        return spare;
      }
      // Before a blank: taking a blank costs a refill (a process start) soon after; a cold node's worker costs
      // a frame each way, and that node was likely done (it was woken for one eval, or idle for a while).
      const cold = scope === undefined ? undefined : this.#steal(node, scope, mb);
      if (cold) return cold;
      const blank = this.#fleet.takeBlank(mb);
      if (blank) {
        node.source = 'blank';
        return blank;
      }
      const fresh = this.#fleet.takeFresh(mb);
      if (fresh) {
        node.source = fresh.source;
        return fresh.worker;
      }
      await this.#fleet.available();
      if (this.#closing || node.destroyed) {
        throw new KeynodeError(node.destroyed ? 'ERR_NODE_DESTROYED' : 'ERR_UNAVAILABLE', `node ${node.id} was not woken: ${node.destroyed ? 'it was destroyed' : 'the container is shutting down'}`);
      }
    }
  }

  #steal(node: AwakeNode, scope: string, mb: number): WorkerProcess | undefined {
    const victim = this.#victim(node, scope, mb);
    if (!victim) return undefined;
    this.#fleet.counts.steal++;
    node.source = 'steal';
    if (this.#ghosts.size >= MAX_GHOSTS) this.#ghosts.delete(this.#ghosts.keys().next().value!);
    this.#ghosts.set(victim.id, Date.now());
    return this.#takeFrom(victim);
  }

  /**
   * The tenant's least recently used idle node whose worker could serve `node` (same heap size, reusable),
   * among cold ones: not hot (see HOT_IDLE_MS), or idle for HOT_IDLE_MS.
   */
  #victim(node: AwakeNode, scope: string, mb: number): AwakeNode | undefined {
    const now = Date.now();
    let best: AwakeNode | undefined;
    for (const n of this.#awake.values()) {
      if (n === node || !n.quiet || n.worker!.memoryMB !== mb || this.#scopeOf(n) !== scope) continue;
      if ((n.evals > 1 || n.returned) && now - n.lastActivity < HOT_IDLE_MS) continue;
      if (!this.#fleet.mayServeAgain(n.worker!)) continue;
      if (!best || n.lastActivity < best.lastActivity) best = n;
    }
    return best;
  }

  /**
   * Puts an idle node to sleep and hands over its worker: the release goes out now and the worker holds
   * the next node's frames until the old node's leftovers have run out (see node-worker/main.ts), so the
   * handover costs no round trip.
   */
  #takeFrom(victim: AwakeNode): WorkerProcess {
    const worker = victim.worker!;
    victim.status = 'stopping';
    this.#fleet.watch(worker, worker.release(this.#options.releaseTimeoutMs));
    this.#detach(victim, worker);
    return worker;
  }

  #attach(node: AwakeNode, worker: WorkerProcess): void {
    node.worker = worker;
    worker.served++;
    worker.scope = this.#scopeOf(node);
    worker.onMessage = (msg) => this.#onMessage(node, worker, msg);
    worker.onExit = (exit) => this.#onExit(node, worker, exit);
  }

  /** The node lets go of a live worker (it was released): it is asleep unless work arrived meanwhile. */
  #detach(node: AwakeNode, worker: WorkerProcess): void {
    node.worker = undefined;
    worker.onMessage = () => {};
    worker.onExit = () => {};
    clearTimeout(node.settling);
    node.settling = undefined;
    node.moveOut = false;
    this.#release(node);
    node.signal();
    if (node.status === 'stopping') node.status = 'asleep';
    if (node.queue.length && !node.destroyed && !this.#closing) return void this.#wake(node);
    this.#forget(node, node.destroyed ? 'destroyed' : 'idle');
  }

  #onMessage(node: AwakeNode, worker: WorkerProcess, msg: FromWorker): void {
    if (node.worker !== worker) return;
    switch (msg.type) {
      case 'ready':
        return;
      case 'started':
        return; // the worker's word only: whether an eval may have run is the container's to know (see #onExit)
      case 'idle':
        if (node.running) return; // idle is only meaningful between evals
        clearTimeout(node.settling);
        node.settling = undefined;
        if (node.status === 'active') node.status = 'idle';
        node.lastActivity = Date.now();
        node.signal();
        if (node.moveOut && node.quiet) return void this.sleep(node);
        this.#pump(node);
        if (node.quiet) this.#fleet.notify(); // a wake waiting for a worker may take this one
        return;
      case 'log': {
        // The node's policy and the bounds on lines are the container's to apply: the worker may not have.
        if (node.running?.evalId !== msg.eval) return;
        node.running.acted = true;
        if (!node.rec.sandbox.log) return;
        const line = worker.logs.admit(msg.line);
        if (line !== undefined) this.#hooks.onLog(node, line);
        return;
      }
      case 'request': {
        const reply = (r: { ok: true; value: unknown } | { ok: false; error: WireError }): void => {
          worker.send({ type: 'reply', id: msg.id, ...r });
        };
        if (node.running?.evalId !== msg.eval) return reply({ ok: false, error: { code: 'ERR_EVAL_ENDED', message: 'this eval has already returned' } });
        node.running.acted = true;
        const tooLarge = requestTooLarge(msg.req, node.rec.sandbox.maxMessageBytes);
        if (tooLarge) return reply({ ok: false, error: tooLarge.toWire() });
        // Each request's reply is held in memory until the worker reads it: a bounded number at a time.
        if (node.requests >= MAX_REQUESTS_IN_FLIGHT) {
          return reply({ ok: false, error: { code: 'ERR_OVERLOADED', message: `more than ${MAX_REQUESTS_IN_FLIGHT} ctx requests in flight in one eval; await some first` } });
        }
        node.requests++;
        this.#hooks.onRequest(node, msg.req).then(
          (value) => reply({ ok: true, value: value ?? null }),
          (e: unknown) => reply({ ok: false, error: (e instanceof KeynodeError ? e : new KeynodeError('ERR_INTERNAL', String(e))).toWire() }),
        ).finally(() => node.requests--);
        return;
      }
      case 'result':
        return void this.#onResult(node, worker, msg);
    }
  }

  async #onResult(node: AwakeNode, worker: WorkerProcess, msg: Extract<FromWorker, { type: 'result' }>): Promise<void> {
    const running = node.running;
    if (!running || running.evalId !== msg.id) return worker.kill('ERR_WORKER_CRASHED'); // a result nobody asked for
    const note = worker.logs.endEval();
    if (note !== undefined && node.rec.sandbox.log) this.#hooks.onLog(node, note);
    const tooLarge = msg.ok ? resultTooLarge(msg.value, node.rec.sandbox.maxMessageBytes) : undefined;
    if (tooLarge) {
      // An honest worker refuses such a result itself: this one is not honest, and serves nothing more.
      clearTimeout(running.timer);
      node.running = undefined;
      node.selfDestruct = undefined;
      running.job.reject(tooLarge);
      for (const settled of node.settled.splice(0)) settled();
      return worker.kill('ERR_WORKER_CRASHED');
    }
    const unknownCode = !msg.ok && msg.error.code === 'ERR_UNKNOWN_CODE';
    // Clients read ERR_UNKNOWN_CODE as "nothing ran, send the source": a worker that had the source lies.
    if (unknownCode && !running.acted && running.job.withSource) return worker.kill('ERR_WORKER_CRASHED');
    // The kill timer keeps running until the worker says idle (see node-worker/main.ts).
    node.settling = running.timer;
    node.running = undefined;
    node.lastActivity = Date.now();
    if (unknownCode && !running.acted) {
      // The worker no longer has the function it was named by hash (its word; but nothing of the eval was
      // seen outside the worker, and its writes go with the error): again, with the source.
      node.code.delete(running.job.h);
      running.job.withSource = true;
      node.queue.unshift(running.job);
      node.queuedBytes += running.job.fn.length + running.job.args.length;
      node.status = 'idle';
      return this.#pump(node);
    }
    // Of an eval that acted (a ctx request, a log line), the code is never passed on as such (a nested call's refusal, say).
    if (unknownCode && !msg.ok) msg.error = { code: 'ERR_UNAVAILABLE', message: `a call this eval made was refused: ${msg.error.message}` };
    if (!msg.ok) {
      node.selfDestruct = undefined; // a failed eval's destroySelf is thrown away with its writes
      node.status = 'idle';
      running.job.reject(KeynodeError.fromWire(fitError(msg.error, node.rec.sandbox.maxMessageBytes)));
      for (const settled of node.settled.splice(0)) settled();
      return this.#pump(node);
    }
    node.status = 'committing';
    try {
      await this.#hooks.onCommit(node, msg.writes);
      running.job.resolve(msg.value);
    } catch (e) {
      running.job.reject(e instanceof KeynodeError ? e : new KeynodeError('ERR_INTERNAL', `commit failed: ${(e as Error).message}`));
    }
    if (node.status === 'committing') node.status = 'idle';
    for (const settled of node.settled.splice(0)) settled();
    node.signal();
    if (!node.worker && !node.queue.length) return this.#forget(node, 'crash'); // it died while we committed
    this.#pump(node);
  }

  #release(node: AwakeNode): void {
    if (!node.reserved) return;
    node.reserved = false;
    this.#hooks.release(node);
  }

  #onExit(node: AwakeNode, worker: WorkerProcess, exit: WorkerExit): void {
    if (node.worker !== worker) return;
    node.worker = undefined;
    clearTimeout(node.settling);
    node.settling = undefined;
    this.#release(node);
    node.signal();
    const running = node.running;
    node.selfDestruct = undefined;
    if (running) {
      clearTimeout(running.timer);
      node.running = undefined;
      if (!(running.ticket && worker.mayHaveRun(running.ticket)) && !running.job.retried) {
        // The eval never reached a worker that could act on it (not written: the worker was dead or condemned
        // already; or behind a release it never answered): nothing of it ran, so it goes back to the head of
        // the queue for the next process instead of failing. One that may have run is never run again, whatever
        // the worker said (`started` or not): what its code did through ctx (a call, a spawn) happened.
        running.job.retried = true;
        node.queue.unshift(running.job);
        node.queuedBytes += running.job.fn.length + running.job.args.length;
      } else {
        const code = exit.reason ?? 'ERR_WORKER_CRASHED';
        running.job.reject(new KeynodeError(code, EXIT_MESSAGES[code] ?? `the node's worker exited (${exit.signal ?? exit.code})`));
      }
    }
    if (node.status === 'committing') return; // the commit in flight finishes and pumps
    if (node.queue.length && !node.destroyed && !this.#closing) {
      void this.#wake(node); // the next message wakes it again
      return;
    }
    this.#forget(node, node.destroyed ? 'destroyed' : this.#closing ? 'shutdown' : node.status === 'stopping' ? 'idle' : 'crash');
  }

  #forget(node: AwakeNode, why: 'idle' | 'crash' | 'destroyed' | 'shutdown'): void {
    // First: a wake that finished its admission after the node was already forgotten still gives it back.
    this.#release(node);
    node.signal();
    if (this.#awake.get(node.id) !== node) return;
    this.#awake.delete(node.id);
    for (const job of node.queue.splice(0)) job.reject(new KeynodeError(node.destroyed ? 'ERR_NODE_DESTROYED' : 'ERR_UNAVAILABLE', node.destroyed ? EXIT_MESSAGES.ERR_NODE_DESTROYED! : 'the node could not be woken'));
    // An entry made only to run a task, or whose wake was refused, never held a process or a budget.
    if (node.wasAwake) this.#hooks.onAsleep(node, why);
  }

  /**
   * Puts an idle node to sleep now. Its worker is scrubbed and kept for the tenant's next wake when it may
   * serve again, else it ends. Resolves when the node no longer holds it.
   */
  async sleep(node: AwakeNode): Promise<void> {
    if (!node.quiet) return;
    const worker = node.worker!;
    node.status = 'stopping';
    const scope = this.#scopeOf(node);
    if (scope === undefined || node.moveOut || !this.#fleet.mayServeAgain(worker)) {
      if (scope !== undefined) this.#fleet.counts.retired++;
      await worker.stop();
      return;
    }
    this.#fleet.watch(worker, worker.release(this.#options.releaseTimeoutMs));
    this.#detach(node, worker);
    this.#fleet.park(worker, scope);
  }

  /** The least recently used quiet node that `filter` accepts: the one to sleep when a budget is full. */
  leastRecentlyUsed(filter: (n: AwakeNode) => boolean): AwakeNode | undefined {
    let best: AwakeNode | undefined;
    for (const n of this.#awake.values()) if (n.quiet && filter(n) && (!best || n.lastActivity < best.lastActivity)) best = n;
    return best;
  }

  /** Kills the node's process at once and fails what it was doing; used by destroy. */
  async terminate(id: NodeId, code: ErrorCode = 'ERR_NODE_DESTROYED'): Promise<void> {
    const node = this.#awake.get(id);
    if (!node) return;
    node.destroyed = code === 'ERR_NODE_DESTROYED';
    // Its last eval has answered but the worker has not said idle yet (a destroy right after an at): a
    // moment more, bounded by that eval's kill timer, keeps the worker for the tenant.
    if (node.destroyed && node.settling && !node.running && this.#scopeOf(node) !== undefined) await node.changed();
    if (node.destroyed && node.quiet && this.#scopeOf(node) !== undefined) {
      // Nothing of it runs: its worker can be scrubbed for the tenant instead of killed (a kill it will be if
      // it does not answer in time).
      await this.sleep(node);
      if (!node.worker) return this.#forget(node, 'destroyed');
    }
    const worker = node.worker;
    if (worker) {
      worker.kill(code);
      await worker.exited;
    }
    this.#forget(node, node.destroyed ? 'destroyed' : 'crash');
  }

  #sweep(): void {
    const cutoff = Date.now() - this.#options.idleTimeoutMs;
    for (const node of this.#awake.values()) {
      if (node.quiet && node.lastActivity <= cutoff) void this.sleep(node);
    }
  }

  /** Graceful: new work is refused, evals in flight finish or hit their timeout, every node sleeps. */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sweepTimer);
    clearInterval(this.#memoryTimer);
    const nodes = [...this.#awake.values()];
    for (const node of nodes) for (const job of node.queue.splice(0)) job.reject(new KeynodeError('ERR_UNAVAILABLE', EXIT_MESSAGES.ERR_UNAVAILABLE!));
    await Promise.all(
      nodes.map(async (node) => {
        const worker = node.worker;
        if (!worker) return;
        // An eval in flight finishes (or meets its own timeout, which kills the worker) before the node sleeps.
        if (node.running || node.status === 'committing') await Promise.race([worker.exited, new Promise<void>((r) => node.settled.push(r))]);
        await worker.stop(1000);
      }),
    );
  }
}
