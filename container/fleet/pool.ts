/**
 * @module container/pool
 * Pre-started blank workers (locked down, compartment built, waiting for `become`), so a wake costs a
 * frame instead of a process start. Only for the default memory size: the heap cap is fixed at exec.
 */
import { KeynodeError } from '../../protocol/index.js';
import { WorkerProcess, type WorkerStartOptions } from './worker-process.js';

const MAX_FAILURES = 5;
const PAUSE_MS = 5000;

export class WorkerPool {
  readonly #size: number;
  readonly #options: WorkerStartOptions;
  readonly #ready: WorkerProcess[] = [];
  /** Started, not ready yet: close() must end these too, or they outlive the container. */
  readonly #starting = new Set<WorkerProcess>();
  #closed = false;
  #waiters: (() => void)[] = [];
  /** Starts that failed in a row: past a few, the pool stops trying for a while instead of spinning. */
  #failures = 0;
  #pausedUntil = 0;
  #lastError: unknown;

  constructor(size: number, options: WorkerStartOptions) {
    this.#size = size;
    this.#options = options;
  }

  get memoryMB(): number {
    return this.#options.memoryMB;
  }

  fill(): void {
    if (Date.now() < this.#pausedUntil) return;
    while (!this.#closed && this.#ready.length + this.#starting.size < this.#size) {
      const w = WorkerProcess.start(this.#options);
      this.#starting.add(w);
      w.ready.then(
        () => {
          this.#starting.delete(w);
          this.#failures = 0;
          if (this.#closed) w.kill('ERR_UNAVAILABLE');
          else this.#ready.push(w);
          this.#wakeWaiters();
        },
        (e: unknown) => {
          this.#starting.delete(w);
          this.#lastError = e;
          if (++this.#failures >= MAX_FAILURES) this.#pausedUntil = Date.now() + PAUSE_MS;
          this.#wakeWaiters();
        },
      );
      void w.exited.then(() => {
        const i = this.#ready.indexOf(w);
        if (i >= 0) this.#ready.splice(i, 1);
      });
    }
  }

  /** A ready worker, or undefined when the pool is empty (the caller starts one itself). */
  take(memoryMB: number): WorkerProcess | undefined {
    if (memoryMB !== this.#options.memoryMB) return undefined;
    let w: WorkerProcess | undefined;
    while ((w = this.#ready.shift()) && !w.alive);
    // Refill a little later: starting a process now would compete for the CPU with the wake it serves.
    setTimeout(() => this.fill(), 50).unref();
    return w;
  }

  /** Resolves once the pool holds `size` ready workers (used by tests and benchmarks). */
  async warm(): Promise<void> {
    this.fill();
    while (!this.#closed && this.#ready.length < this.#size) {
      if (this.#failures >= MAX_FAILURES) throw new KeynodeError('ERR_UNAVAILABLE', `workers fail to start: ${(this.#lastError as Error)?.message ?? this.#lastError}`);
      await new Promise<void>((r) => this.#waiters.push(r));
      this.fill(); // replaces a worker that failed to start
    }
  }

  #wakeWaiters(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wakeWaiters();
    const starting = [...this.#starting];
    for (const w of starting) w.kill('ERR_UNAVAILABLE');
    const all = this.#ready.splice(0);
    await Promise.all([...all.map((w) => w.stop(500)), ...starting.map((w) => w.exited)]);
  }
}
