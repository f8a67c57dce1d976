/**
 * @module container/fleet/cpu-watch
 * CPU a worker uses while the container has asked nothing of it. An eval's time limit and a release's
 * timeout bound a worker while it works; a worker that says `idle` and keeps computing (only a worker whose
 * language sandbox broke can) has no such limit, so its CPU is read from /proc, never from the worker's
 * own report, and it is killed past a small allowance.
 *
 * The allowance is a bucket: `IDLE_CPU_MS` plus 1 ms per MB of heap cap at once (a full collection of a big
 * heap that V8 runs while idle), refilled at `IDLE_CPU_SHARE` of a core. CPU used while an eval or a release
 * is in flight is not charged, up to `BUSY_CORES` cores of its wall time (the JavaScript thread and V8's one
 * helper thread), so a busy worker's own work never counts against it.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { TokenBucket } from './rate.js';

export const IDLE_CPU_MS = 500;
export const IDLE_CPU_SHARE = 0.05;
const BUSY_CORES = 2;
/** USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux architecture Node runs on. */
const TICK_MS = 10;
/** How often each watched worker is read; reads are spread over the period. */
const READ_EVERY_MS = 1000;
const POLL_MS = 100;

/** utime + stime of /proc/<pid>/stat in ms, parsed after the last ')' (the command name may hold spaces and parentheses). */
export function cpuMsOf(stat: string): number | undefined {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of the line; `rest` starts at field 3.
  const ticks = Number(rest[11]) + Number(rest[12]);
  return Number.isFinite(ticks) ? ticks * TICK_MS : undefined;
}

export class CpuWatch {
  readonly #fd: number | undefined;
  readonly #buf = Buffer.alloc(1024);
  readonly #allowance: TokenBucket;
  readonly #onOver: (usedMs: number) => void;
  #last: number | undefined;
  /** Wall time of busy spans since the last reading, and when the current one began. */
  #busyMs = 0;
  #busySince: number | undefined;
  #next: number;

  constructor(pid: number, memoryMB: number, onOver: (usedMs: number) => void) {
    const burst = IDLE_CPU_MS + memoryMB;
    this.#allowance = new TokenBucket(IDLE_CPU_SHARE * 1000, burst);
    this.#onOver = onOver;
    try {
      this.#fd = openSync(`/proc/${pid}/stat`, 'r');
    } catch {
      this.#fd = undefined; // not Linux: nothing to read
    }
    this.#last = this.#read();
    this.#next = performance.now() + Math.random() * READ_EVERY_MS;
    if (this.#fd === undefined) return;
    watched.add(this);
    if (watched.size === 1) timer = setInterval(poll, POLL_MS).unref();
  }

  /** The worker has (or no longer has) an eval or a release in flight. */
  busy(on: boolean, now = performance.now()): void {
    if (on) this.#busySince ??= now;
    else if (this.#busySince !== undefined) {
      this.#busyMs += now - this.#busySince;
      this.#busySince = undefined;
    }
  }

  #read(): number | undefined {
    if (this.#fd === undefined) return undefined;
    try {
      const n = readSync(this.#fd, this.#buf, 0, this.#buf.length, 0);
      return cpuMsOf(this.#buf.toString('latin1', 0, n));
    } catch {
      return undefined;
    }
  }

  /** Charges the CPU used since the last reading beyond what busy spans explain. */
  check(now = performance.now()): void {
    if (now < this.#next) return;
    this.#next = now + READ_EVERY_MS;
    const cpu = this.#read();
    if (cpu === undefined) return;
    let busy = this.#busyMs;
    if (this.#busySince !== undefined) {
      busy += now - this.#busySince;
      this.#busySince = now;
    }
    this.#busyMs = 0;
    const used = cpu - (this.#last ?? cpu) - BUSY_CORES * busy;
    this.#last = cpu;
    if (used <= 0) return;
    this.#allowance.spend(used, now);
    if (this.#allowance.level(now) < 0) {
      this.stop();
      this.#onOver(used);
    }
  }

  stop(): void {
    if (!watched.delete(this)) return;
    if (this.#fd !== undefined) closeSync(this.#fd);
    if (watched.size === 0) clearInterval(timer);
  }
}

const watched = new Set<CpuWatch>();
let timer: NodeJS.Timeout | undefined;

function poll(): void {
  const now = performance.now();
  for (const w of watched) w.check(now);
}
