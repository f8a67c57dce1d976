/**
 * @module container/pool
 * Pre-started blank workers (locked down, compartment built, waiting for `become`), so a wake costs a
 * frame instead of a process start. Only for the default memory size: the heap cap is fixed at exec.
 */
import { WorkerProcess, type WorkerStartOptions } from './worker-process.js';

export class WorkerPool {
  readonly #size: number;
  readonly #options: WorkerStartOptions;
  readonly #ready: WorkerProcess[] = [];
  #starting = 0;
  #closed = false;
  #waiters: (() => void)[] = [];

  constructor(size: number, options: WorkerStartOptions) {
    this.#size = size;
    this.#options = options;
  }

  get memoryMB(): number {
    return this.#options.memoryMB;
  }

  fill(): void {
    while (!this.#closed && this.#ready.length + this.#starting < this.#size) {
      this.#starting++;
      const w = WorkerProcess.start(this.#options);
      w.ready.then(
        () => {
          this.#starting--;
          if (this.#closed) w.kill('ERR_UNAVAILABLE');
          else this.#ready.push(w);
          this.#wakeWaiters();
        },
        () => {
          this.#starting--;
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
    queueMicrotask(() => this.fill());
    return w;
  }

  /** Resolves once the pool holds `size` ready workers (used by tests and benchmarks). */
  async warm(): Promise<void> {
    this.fill();
    while (!this.#closed && this.#ready.length < this.#size) {
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
    const all = this.#ready.splice(0);
    await Promise.all(all.map((w) => w.stop(500)));
  }
}
