/**
 * @module container/fleet/pool
 * Pre-started blank workers (locked down, waiting for `become`) of one heap size, so a wake that finds no
 * reusable worker costs a frame instead of a process start. The pool breathes: its target follows the
 * recent rate of such wakes (grows under bursts, shrinks when they stop) between a floor and a ceiling,
 * and it refills one process at a time, only while evals leave the CPU some room.
 */
import { KeynodeError } from '../../protocol/index.js';
import { DecayingRate } from './rate.js';
import { WorkerProcess, type WorkerStartOptions } from './worker-process.js';

const MAX_FAILURES = 5;
const PAUSE_MS = 5000;
/** Misses are averaged over about this long. */
const RATE_WINDOW_MS = 5000;
/** Blanks kept per miss/s: about the time a refill takes on a loaded machine, so a steady rate never waits. */
const HORIZON_S = 1;
/** When the CPU is busy, a refill looks again after this long. */
const RETRY_MS = 50;

/** Blanks to keep for a miss rate: enough for about HORIZON_S of misses, between the floor and the ceiling. */
export function poolTarget(missesPerSecond: number, min: number, max: number): number {
  // A rate that has all but decayed (under one miss in 20 s) asks for nothing above the floor.
  const wanted = missesPerSecond < 0.05 ? 0 : Math.ceil(missesPerSecond * HORIZON_S);
  return Math.max(min, Math.min(max, wanted));
}

export interface PoolOptions extends WorkerStartOptions {
  /** Blanks always kept (the floor), and the most ever kept (the ceiling). */
  min: number;
  max: number;
  /** True while evals use every core: a refill then waits rather than take CPU from them. */
  busy(): boolean;
  /** Whether one more idle process of this size fits in the container's memory capacity. */
  roomFor(memoryMB: number): boolean;
  /** A blank became ready. */
  onReady(): void;
  /** Whether another process may start now (starts across the container are bounded). */
  canStart(): boolean;
}

export class BlankPool {
  readonly #options: PoolOptions;
  readonly #ready: WorkerProcess[] = [];
  /** Started, not ready yet, not promised to any wake. */
  readonly #starting = new Set<WorkerProcess>();
  /** Every process this pool started that has not exited: close() ends them all. */
  readonly #owned = new Set<WorkerProcess>();
  #closed = false;
  #waiters: (() => void)[] = [];
  #failures = 0;
  #pausedUntil = 0;
  #lastError: unknown;
  #retry: NodeJS.Timeout | undefined;
  readonly #misses = new DecayingRate(RATE_WINDOW_MS);

  constructor(options: PoolOptions) {
    this.#options = options;
  }

  get memoryMB(): number {
    return this.#options.memoryMB;
  }

  get size(): { ready: number; starting: number; target: number } {
    return { ready: this.#ready.length, starting: this.#starting.size, target: this.target() };
  }

  /** Misses per second over the last few seconds. */
  rate(): number {
    return this.#misses.value();
  }

  /** A wake found no reusable worker of this size. */
  miss(): void {
    this.#misses.hit();
    // Not now: starting a process blocks this event loop for the fork (5-20 ms here), and the wake that
    // missed is still on its way.
    this.#schedule(RETRY_MS);
  }

  target(): number {
    return poolTarget(this.rate(), this.#options.min, this.#options.max);
  }

  /** A ready blank; with `starting`, else one still starting (the caller awaits its `ready`). */
  take(starting: boolean): WorkerProcess | undefined {
    let w: WorkerProcess | undefined;
    while ((w = this.#ready.shift()) && !w.alive);
    if (!w && starting) {
      // A blank on its way is sooner than a new process: claim it.
      for (const s of this.#starting) {
        this.#starting.delete(s);
        w = s;
        break;
      }
    }
    if (!w) return undefined;
    this.#owned.delete(w);
    // Refill a little later: starting a process now would compete for the CPU with the wake it serves.
    this.#schedule(RETRY_MS);
    return w;
  }

  #schedule(ms: number): void {
    if (this.#retry || this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.fill();
    }, ms).unref();
  }

  /** Starts one blank if the pool is short of its target (one at a time), or stops one past it. */
  fill(): void {
    if (this.#closed) return;
    const target = this.target();
    if (this.#ready.length > target) {
      // Shrink slowly: the oldest blank goes first, one per call.
      this.#ready.shift()?.stop(500).catch(() => {});
      if (this.#ready.length > target) this.#schedule(1000);
      return;
    }
    if (this.#starting.size > 0 || this.#ready.length + this.#starting.size >= target) return;
    if (Date.now() < this.#pausedUntil) return this.#schedule(this.#pausedUntil - Date.now());
    // The floor is kept even when busy: it is what a quiet container promises every wake.
    const belowFloor = this.#ready.length < this.#options.min;
    if (!belowFloor && this.#options.busy()) return this.#schedule(RETRY_MS);
    if (!this.#options.canStart()) return this.#schedule(RETRY_MS);
    if (!this.#options.roomFor(this.#options.memoryMB)) return this.#schedule(1000);
    const w = WorkerProcess.start(this.#options);
    this.#starting.add(w);
    this.#owned.add(w);
    w.ready.then(
      () => {
        this.#failures = 0;
        if (!this.#starting.delete(w)) return this.#wakeWaiters(); // claimed by a wake while it started
        if (this.#closed) w.kill('ERR_UNAVAILABLE');
        else this.#ready.push(w);
        this.#wakeWaiters();
        this.#options.onReady();
        this.fill();
      },
      (e: unknown) => {
        this.#starting.delete(w);
        this.#lastError = e;
        if (++this.#failures >= MAX_FAILURES) this.#pausedUntil = Date.now() + PAUSE_MS;
        this.#wakeWaiters();
        this.fill();
      },
    );
    void w.exited.then(() => {
      this.#owned.delete(w);
      const i = this.#ready.indexOf(w);
      if (i >= 0) this.#ready.splice(i, 1);
    });
  }

  /** Resolves once the pool holds its floor of ready workers (tests and benchmarks). */
  async warm(): Promise<void> {
    this.fill();
    while (!this.#closed && this.#ready.length < this.#options.min) {
      if (this.#failures >= MAX_FAILURES) throw new KeynodeError('ERR_UNAVAILABLE', `workers fail to start: ${(this.#lastError as Error)?.message ?? this.#lastError}`);
      await new Promise<void>((r) => this.#waiters.push(r));
      this.fill();
    }
  }

  #wakeWaiters(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#wakeWaiters();
    const ready = new Set(this.#ready.splice(0));
    const all = [...this.#owned];
    this.#starting.clear();
    // A ready blank exits when asked; one still booting is killed rather than waited for.
    for (const w of all) if (!ready.has(w)) w.kill('ERR_UNAVAILABLE');
    await Promise.all(all.map((w) => (ready.has(w) ? w.stop(500) : w.exited)));
  }
}
