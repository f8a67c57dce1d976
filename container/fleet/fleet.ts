/**
 * @module container/fleet/fleet
 * Every worker process that serves no node right now, and where a wake gets one:
 * - spares: processes that served a node, were scrubbed (`release`) and wait for another node of the same
 *   tenant and heap size. They belong to no budget; a container-wide cap and an idle timeout bound them.
 * - blanks: pre-started processes that served nobody (one adaptive pool per heap size), for a tenant
 *   with no spare, for `isolation: 'process'` nodes, and when reuse is off.
 * - new processes, when neither is there (the supervisor first tries to take a worker from the tenant's
 *   least recently used idle node; see supervisor.ts).
 * A process is retired (stopped) instead of parked after `maxNodes` nodes (with jitter, so processes
 * started together do not all retire together), when its heap stayed heavy after a release, when it was
 * ever killed or broke the protocol, and when idle processes would not fit the memory capacity.
 */
import { BlankPool, type PoolOptions } from './pool.js';
import { WorkerProcess, type WorkerLaunch } from './worker-process.js';

export type WorkerReuse = 'off' | 'tenant';

export interface FleetOptions {
  launch: WorkerLaunch;
  /** Heap size of the default sandbox: its pool keeps `poolMin` blanks always. */
  defaultMemoryMB: number;
  poolMin: number;
  poolMax: number;
  reuse: WorkerReuse;
  /** Nodes one process serves before it is retired. */
  maxNodesPerWorker: number;
  /** Spare (scrubbed) processes kept across all tenants, and how long one waits before it is retired. */
  maxSpares: number;
  spareIdleMs: number;
  /** True while evals use every core (refills wait). */
  busy(): boolean;
  /** Process starts for wakes at once; a wake past it waits for a worker to come free or a start to end. */
  maxStarts: number;
  /** Memory of the capacity not granted to awake nodes, in MB. */
  memoryLeftMB(): number;
  /** Resident memory a worker may use beyond its heap cap; a spare or blank past it is killed. */
  rssOverheadMB: number;
}

/** Where a wake's worker came from, in the order a wake looks (see Supervisor.#acquire). */
export type WorkerSource = 'spare' | 'steal' | 'blank' | 'new';

const JITTER = 0.1;

interface Spare {
  worker: WorkerProcess;
  parkedAt: number;
}

export class Fleet {
  readonly #o: FleetOptions;
  readonly #pools = new Map<number, BlankPool>();
  /** By `scope|memoryMB`, most recently parked last. */
  readonly #spares = new Map<string, Spare[]>();
  #spareCount = 0;
  /** Processes being stopped: close() waits for them. */
  readonly #retiring = new Set<WorkerProcess>();
  /** Started for a wake (not from a pool) and not yet ready: close() must end these too. */
  readonly #starting = new Set<WorkerProcess>();
  readonly #limits = new WeakMap<WorkerProcess, number>();
  /** Answered a release with a heap that stayed heavy: retired once its current node sleeps. */
  readonly #doomed = new WeakSet<WorkerProcess>();
  readonly #sweep: NodeJS.Timeout;
  #closed = false;
  /** Wakes waiting for any worker to become available (see available()). */
  #waiting: (() => void)[] = [];
  readonly counts: Record<WorkerSource, number> & { retired: number } = { spare: 0, steal: 0, blank: 0, new: 0, retired: 0 };

  constructor(options: FleetOptions) {
    this.#o = options;
    this.#pool(options.defaultMemoryMB);
    this.#sweep = setInterval(() => this.#tick(), 1000).unref();
  }

  get reuse(): WorkerReuse {
    return this.#o.reuse;
  }

  #pool(memoryMB: number): BlankPool {
    let pool = this.#pools.get(memoryMB);
    if (!pool) {
      const options: PoolOptions = {
        ...this.#o.launch,
        memoryMB,
        min: memoryMB === this.#o.defaultMemoryMB ? this.#o.poolMin : 0,
        max: this.#o.poolMax,
        busy: this.#o.busy,
        roomFor: (mb) => this.#roomFor(mb),
        onReady: () => this.notify(),
        canStart: () => this.#startsInFlight() < this.#o.maxStarts,
      };
      pool = new BlankPool(options);
      this.#pools.set(memoryMB, pool);
    }
    return pool;
  }

  /** Memory held by processes that serve no node: spares and ready blanks. */
  #idleMB(): number {
    let mb = 0;
    for (const list of this.#spares.values()) for (const s of list) mb += s.worker.memoryMB;
    for (const pool of this.#pools.values()) mb += pool.size.ready * pool.memoryMB;
    return mb;
  }

  #roomFor(memoryMB: number): boolean {
    return this.#idleMB() + memoryMB <= this.#o.memoryLeftMB();
  }

  /** Starts the default pool (at container start). */
  fill(): void {
    this.#pool(this.#o.defaultMemoryMB).fill();
  }

  /** Resolves when the default pool holds its floor of ready blanks. */
  warm(): Promise<void> {
    return this.#pool(this.#o.defaultMemoryMB).warm();
  }

  /** A scrubbed process that last served this tenant, with this heap size. */
  takeSpare(scope: string, memoryMB: number): WorkerProcess | undefined {
    const key = `${scope}|${memoryMB}`;
    const list = this.#spares.get(key);
    let spare: Spare | undefined;
    while (list && (spare = list.pop()) && !spare.worker.alive) this.#spareCount--;
    if (list && !list.length) this.#spares.delete(key);
    if (!spare?.worker.alive) return undefined;
    this.#spareCount--;
    spare.worker.onExit = () => {};
    this.counts.spare++;
    return spare.worker;
  }

  /** A ready blank (a wake that found no reusable worker: it counts towards the pool's size). */
  takeBlank(memoryMB: number): WorkerProcess | undefined {
    const pool = this.#pool(memoryMB);
    const blank = pool.take(false);
    if (!blank) return undefined;
    pool.miss();
    this.counts.blank++;
    return blank;
  }

  /**
   * A process that never served a node: a blank still starting, or a new one; undefined when `maxStarts`
   * processes are starting already (the caller waits with available(), then looks again everywhere: a
   * worker that comes free meanwhile is cheaper than one more start competing for the same cores).
   */
  takeFresh(memoryMB: number): { worker: WorkerProcess; source: 'blank' | 'new' } | undefined {
    const pool = this.#pool(memoryMB);
    const blank = pool.take(true);
    if (blank) {
      pool.miss();
      this.counts.blank++;
      if (!blank.isReady) this.#track(blank);
      return { worker: blank, source: 'blank' };
    }
    if (this.#startsInFlight() >= this.#o.maxStarts) return undefined;
    pool.miss();
    const worker = WorkerProcess.start({ ...this.#o.launch, memoryMB });
    this.#track(worker);
    this.counts.new++;
    return { worker, source: 'new' };
  }

  /** Processes starting for wakes and for pools. */
  #startsInFlight(): number {
    let n = this.#starting.size;
    for (const pool of this.#pools.values()) n += pool.size.starting;
    return n;
  }

  /** Counts a starting process for a wake until it is ready (or failed), then lets a waiting wake look again. */
  #track(worker: WorkerProcess): void {
    this.#starting.add(worker);
    const done = () => {
      this.#starting.delete(worker);
      this.notify();
    };
    worker.ready.then(done, done);
  }

  /** Resolves at the next sign that a worker may have come free (a node idle, a spare, a blank, a start ended). */
  available(): Promise<void> {
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  notify(): void {
    for (const f of this.#waiting.splice(0)) f();
  }

  /**
   * Follows a release the supervisor did not wait for (the worker holds the next node's frames until it has
   * answered): a worker that answers with a heavy heap serves no node after the one it may already have.
   * One that does not answer in time was killed by `release` itself.
   */
  watch(worker: WorkerProcess, released: Promise<number | undefined>): void {
    void released.then((heapUsed) => {
      if (heapUsed === undefined || this.clean(worker, heapUsed)) return;
      this.#doomed.add(worker);
      for (const [key, list] of this.#spares) {
        if (!list.some((s) => s.worker === worker)) continue;
        this.#drop(key, worker);
        this.retire(worker);
      }
    });
  }

  /** Whether a process may serve one more node after the one it serves now. */
  mayServeAgain(worker: WorkerProcess): boolean {
    if (this.#o.reuse === 'off' || this.#closed || !worker.reusable || this.#doomed.has(worker)) return false;
    let limit = this.#limits.get(worker);
    if (limit === undefined) {
      limit = Math.max(1, Math.round(this.#o.maxNodesPerWorker * (1 - JITTER * Math.random())));
      this.#limits.set(worker, limit);
    }
    return worker.served < limit;
  }

  /** Whether a released heap is light enough to reuse the process (the worker collected it if it was not). */
  clean(worker: WorkerProcess, heapUsed: number): boolean {
    return heapUsed <= (worker.memoryMB / 2) * 1024 * 1024;
  }

  /** A released process (see watch) waits for the tenant's next wake, or is retired. */
  park(worker: WorkerProcess, scope: string): void {
    if (!this.mayServeAgain(worker) || this.#o.maxSpares === 0) return this.retire(worker);
    while (this.#spareCount >= this.#o.maxSpares || !this.#roomFor(worker.memoryMB)) {
      if (!this.#retireOldestSpare()) return this.retire(worker);
    }
    const key = `${scope}|${worker.memoryMB}`;
    let list = this.#spares.get(key);
    if (!list) this.#spares.set(key, (list = []));
    list.push({ worker, parkedAt: Date.now() });
    this.#spareCount++;
    worker.onExit = () => this.#drop(key, worker);
    this.notify();
  }

  #drop(key: string, worker: WorkerProcess): void {
    const list = this.#spares.get(key);
    const i = list?.findIndex((s) => s.worker === worker) ?? -1;
    if (i < 0) return;
    list!.splice(i, 1);
    this.#spareCount--;
    if (!list!.length) this.#spares.delete(key);
  }

  #retireOldestSpare(): boolean {
    let oldest: { key: string; spare: Spare } | undefined;
    for (const [key, list] of this.#spares) {
      const s = list[0];
      if (s && (!oldest || s.parkedAt < oldest.spare.parkedAt)) oldest = { key, spare: s };
    }
    if (!oldest) return false;
    this.#drop(oldest.key, oldest.spare.worker);
    this.retire(oldest.spare.worker);
    return true;
  }

  /** Stops a process for good. */
  retire(worker: WorkerProcess): void {
    worker.onExit = () => {};
    worker.onMessage = () => {};
    if (!worker.alive) return;
    this.counts.retired++;
    this.#retiring.add(worker);
    void worker.stop(1000).finally(() => this.#retiring.delete(worker));
  }

  #tick(): void {
    const cutoff = Date.now() - this.#o.spareIdleMs;
    for (const [key, list] of [...this.#spares]) {
      for (const s of [...list]) {
        // No node's code runs in a spare; one that grows anyway is not what it claims to be.
        const rss = s.worker.rssMB();
        if (rss !== undefined && rss > s.worker.memoryMB + this.#o.rssOverheadMB) s.worker.kill('ERR_OUT_OF_MEMORY');
        else if (s.parkedAt > cutoff) continue;
        this.#drop(key, s.worker);
        this.retire(s.worker);
      }
    }
    for (const pool of this.#pools.values()) pool.fill(); // shrinks pools whose burst has passed
  }

  stats(): { spares: number; blanks: number; starting: number; poolTarget: number; missRate: number; counts: Fleet['counts'] } {
    let blanks = 0;
    let starting = this.#starting.size;
    let poolTarget = 0;
    let missRate = 0;
    for (const pool of this.#pools.values()) {
      const s = pool.size;
      blanks += s.ready;
      starting += s.starting;
      poolTarget += s.target;
      missRate += pool.rate();
    }
    return { spares: this.#spareCount, blanks, starting, poolTarget, missRate, counts: { ...this.counts } };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweep);
    this.notify();
    for (const list of this.#spares.values()) for (const s of list) this.retire(s.worker);
    this.#spares.clear();
    this.#spareCount = 0;
    for (const w of this.#starting) w.kill('ERR_UNAVAILABLE');
    await Promise.all([...[...this.#pools.values()].map((p) => p.close()), ...[...this.#retiring].map((w) => w.exited), ...[...this.#starting].map((w) => w.exited)]);
  }
}
