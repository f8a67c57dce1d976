/**
 * @module container/fleet/worker-process
 * One worker OS process: started with execa under Node's permission model and a V8 heap cap, spoken to in
 * length-prefixed MessagePack frames over stdio. Everything it sends is checked as untrusted input, as if
 * its language sandbox were broken: a frame that breaks the protocol (including one the protocol does not
 * expect now, such as anything but `released` while a release is unanswered) kills it, and nothing it sends
 * after the container decided to kill it counts. Its frames are read a bounded number per turn of the event
 * loop and per second, so a flood costs the other workers a turn at most. A process may serve several nodes
 * one after another (`release` between them); one the container had to kill, or that misbehaved, is never
 * reused.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { decodeResultOrIdleFrame, encode, encodeEvalFrame, encodeFrame, FrameReader, isResultOrIdleFrame, KeynodeError, strictDecoder, type ErrorCode, type FromWorker, type ToWorker } from '../../protocol/index.js';
import { CpuWatch } from './cpu-watch.js';
import { LogAllowance } from './frame-bounds.js';
import { TokenBucket } from './rate.js';
import { checkFromWorker } from './worker-messages.js';
import type { WorkerRegistry } from './worker-registry.js';

const require = createRequire(import.meta.url);
// The worker's own CommonJS build (node-worker/tsconfig.json): its code and the protocol files it uses.
const WORKER_MAIN = fileURLToPath(new URL('../../worker/node-worker/main.js', import.meta.url));
const WORKER_DIST = dirname(dirname(WORKER_MAIN));
/**
 * A package's directory as the worker's module resolver will walk it: through every node_modules on the way
 * up (symlinked ones too, as pnpm and npm link make them) and at its real path.
 */
function packageDirs(name: string): string[] {
  const dirs = new Set([dirname(require.resolve(`${name}/package.json`))]);
  for (let dir = dirname(WORKER_MAIN); ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(candidate)) {
      dirs.add(candidate);
      dirs.add(realpathSync(candidate));
    }
    if (dirname(dir) === dir) break;
  }
  return [...dirs];
}

// The worker may read its own code (with its minified copy of acorn, the parser that reads shipped
// functions), the protocol it shares with us, and its libraries: SES, MessagePack and the compiler helpers
// it gives shipped functions (tslib). Nothing else.
const READABLE = [WORKER_DIST, ...packageDirs('ses'), ...packageDirs('@msgpack/msgpack'), ...packageDirs('tslib')];

/**
 * Whether a worker running as uid/gid could read its code: every directory on the way must be searchable and
 * the files readable by that user. Checked at start so a bad setup fails with a clear message, not with
 * workers that die at birth.
 */
export function workerReadableBy(uid: number, gid: number): string | undefined {
  const can = (path: string, bits: number): boolean => {
    const st = statSync(path);
    const mode = st.uid === uid ? st.mode >> 6 : st.gid === gid ? st.mode >> 3 : st.mode;
    return uid === 0 || (mode & bits) === bits;
  };
  for (const target of [WORKER_MAIN, process.execPath, ...READABLE]) {
    for (let dir = dirname(target); ; dir = dirname(dir)) {
      if (!can(dir, 0o1)) return `${dir} is not searchable by uid ${uid}`;
      if (dirname(dir) === dir) break;
    }
    if (!can(target, 0o4)) return `${target} is not readable by uid ${uid}`;
  }
  return undefined;
}
const STDERR_TAIL = 8 * 1024;

/** The whole environment of a worker. */
export const WORKER_ENV: Readonly<Record<string, string>> = Object.freeze({ MALLOC_ARENA_MAX: '1', MALLOC_TRIM_THRESHOLD_: '131072' });

/** The page size, from this process's own RSS in pages (statm) and in kB (status); 4096 if unreadable. */
const PAGE_SIZE = (() => {
  try {
    const pages = Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]);
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
    const size = (kb * 1024) / pages;
    for (const p of [4096, 16384, 65536]) if (Math.abs(size - p) / p < 0.2) return p;
  } catch {
    // not Linux
  }
  return 4096;
})();

/** How this container starts its workers (the same for every worker). */
export interface WorkerLaunch {
  /** Largest frame accepted from the worker. */
  maxFrameBytes: number;
  /** Shows in the worker's command line which container it belongs to (for people: a worker can rewrite it, so orphans are found by `registry`). */
  marker: string;
  /** Run workers as this user and group (the container must be allowed to: usually root). */
  uid?: number;
  gid?: number;
  /** A command the worker runs under, e.g. ['unshare', '--net', '--'] or ['prlimit', '--nproc=0', '--']. It must exec the worker (keep its pid). */
  wrapper?: string[];
  /** Where each worker is recorded while it runs, so a restarted container kills exactly its orphans. */
  registry?: WorkerRegistry;
  readyTimeoutMs?: number;
}

export interface WorkerStartOptions extends WorkerLaunch {
  memoryMB: number;
}

export interface WorkerExit {
  code: number | null;
  signal: string | null;
  /** Why it ended, when the container ended it or could tell (timeout, memory, protocol). */
  reason?: ErrorCode;
}

const IGNORE = (): void => {};

/**
 * MessagePack from a worker, every declared length capped before anything is built for it: a result's writes
 * (100,000 at most, as the shape checks say), a map's keys (protocol maps are small; a spawn request's options
 * are the largest), strings and bytes (a frame's own cap bounds them).
 */
const decodeWorkerFrame = strictDecoder({ maxArrayLength: 100_000, maxMapLength: 1024, maxStrLength: 0xffff_ffff, maxBinLength: 0xffff_ffff, maxExtLength: 0xffff_ffff });

/**
 * Frames handled from one worker before the event loop turns (then the rest wait, and its pipe is not read
 * meanwhile): the other workers' frames and the HTTP requests get their turn in between.
 */
const FRAMES_PER_TURN = 64;
const BYTES_PER_TURN = 1024 * 1024;
/** Frames and bytes per second from one worker; past them its pipe is not read until it may send again. */
const FRAMES_PER_SECOND = 20_000;
const BYTES_PER_SECOND = 128 * 1024 * 1024;

/** Whether an eval sent to a worker may have run there (see WorkerProcess.mayHaveRun). */
export interface EvalTicket {
  /** The eval frame was written to the worker. */
  written: boolean;
  /** Releases the worker had to answer before it could take the eval. */
  gate: number;
}

export class WorkerProcess {
  readonly memoryMB: number;
  readonly startedAt = Date.now();
  readonly exited: Promise<WorkerExit>;
  readonly ready: Promise<void>;
  /** Resolves `ready` and starts the CPU watch (set in the constructor, where `ready` is made). */
  readonly #onReady: () => void;
  /** Set by whoever the process serves now; reset to a no-op when it stops serving them. */
  onMessage: (msg: FromWorker) => void = IGNORE;
  onExit: (exit: WorkerExit) => void = IGNORE;
  /** Nodes this process has become (a blank worker has served none). */
  served = 0;
  /** The only tenant whose nodes this process may serve, once it has served one (see fleet.ts). */
  scope: string | undefined;
  /** Said `ready`: booted and locked down. */
  isReady = false;
  #child: ResultPromise;
  /** Releases sent and not answered yet, oldest first: the worker answers them in order. */
  readonly #releases: ((heapUsed: number | undefined) => void)[] = [];
  #corked = false;
  #reason: ErrorCode | undefined;
  #stderr = '';
  #alive = true;
  /** An open /proc/<pid>/statm: re-reading an open file costs microseconds, opening it each poll does not. */
  #statm: number | undefined;
  readonly #maxBuffered: number;
  readonly #statmBuf = Buffer.alloc(128);
  /** Frames read from the pipe and not handled yet (from #inboxHead on): a flood waits here, bounded by the paused pipe. */
  #inbox: Buffer[] = [];
  #inboxHead = 0;
  /** A later turn will handle the inbox (the pipe is paused until then). */
  #drainScheduled = false;
  readonly #frameRate = new TokenBucket(FRAMES_PER_SECOND, FRAMES_PER_SECOND);
  readonly #byteRate: TokenBucket;
  /** An eval was sent and its `idle` has not come; its result has (not) come. */
  #evalOut = false;
  #resulted = false;
  #releasesSent = 0;
  #releasesAnswered = 0;
  #cpu: CpuWatch | undefined;
  readonly #registry: WorkerRegistry | undefined;
  /** Log lines this worker may still send (per eval, per second). */
  readonly logs = new LogAllowance();

  private constructor(options: WorkerStartOptions) {
    this.memoryMB = options.memoryMB;
    this.#maxBuffered = Math.max(64 * 1024 * 1024, 2 * options.maxFrameBytes);
    const flags = [
      `--max-old-space-size=${options.memoryMB}`,
      // A small young generation: an idle worker holds ~9 MB instead of up to ~60 after allocation-heavy work
      // (allocation-heavy evals run some 20-30% slower); one V8 platform thread instead of four. Measured.
      '--max-semi-space-size=4',
      '--v8-pool-size=1',
      // The worker collects a heavy heap before reporting its size on release; user code never sees `gc`.
      '--expose-gc',
      '--experimental-permission',
      ...READABLE.map((p) => `--allow-fs-read=${p}`),
      '--no-warnings',
    ];
    const [file, ...prefix] = options.wrapper?.length ? [...options.wrapper, process.execPath] : [process.execPath];
    this.#child = execa(file!, [...prefix, ...flags, WORKER_MAIN, options.marker], {
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      cleanup: true,
      extendEnv: false,
      // Nothing of the container's environment; only glibc's allocator told to keep less: one arena (the
      // worker is one JavaScript thread) and free memory returned to the system sooner. Saves 2-4 MB a worker.
      env: WORKER_ENV,
      cwd: dirname(WORKER_MAIN),
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    });
    this.#byteRate = new TokenBucket(BYTES_PER_SECOND, Math.max(BYTES_PER_SECOND, options.maxFrameBytes));
    this.#registry = options.registry;
    const pid = this.#child.pid;
    if (pid !== undefined && this.#registry && !this.#registry.record(pid)) {
      this.#stderr += '\n[keynode] the worker could not be recorded in the data directory';
      this.kill('ERR_UNAVAILABLE');
    }
    const reader = new FrameReader(options.maxFrameBytes);
    let resolveReady!: () => void;
    let rejectReady!: (e: unknown) => void;
    this.ready = new Promise((res, rej) => {
      resolveReady = res;
      rejectReady = rej;
    });
    this.ready.catch(() => {});
    const readyTimer = setTimeout(() => this.kill('ERR_UNAVAILABLE'), options.readyTimeoutMs ?? 15_000);
    this.#onReady = () => {
      clearTimeout(readyTimer);
      resolveReady();
      if (pid !== undefined) {
        this.#cpu = new CpuWatch(pid, this.memoryMB, (usedMs) => {
          this.#stderr += `\n[keynode] the worker used ${Math.round(usedMs)} ms of CPU with no eval in flight`;
          this.kill('ERR_WORKER_CRASHED');
        });
        this.#busy();
      }
    };

    this.#child.stdout!.on('data', (chunk: Buffer) => {
      if (!this.#listening) return;
      try {
        for (const frame of reader.push(chunk)) this.#inbox.push(frame);
      } catch (e) {
        return this.#violation(e);
      }
      this.#drain();
    });
    this.#child.stderr!.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString('utf8')).slice(-STDERR_TAIL);
    });
    this.#child.stdin!.on('error', () => {}); // EPIPE after death is reported by `exited`
    this.exited = this.#child.then((r) => {
      this.#alive = false;
      this.#cpu?.stop();
      if (pid !== undefined) this.#registry?.forget(pid);
      this.#inbox = [];
      if (this.#statm !== undefined) closeSync(this.#statm);
      this.#statm = undefined;
      clearTimeout(readyTimer);
      if (!this.#reason && /heap out of memory|Allocation failed|OOM/i.test(this.#stderr)) this.#reason = 'ERR_OUT_OF_MEMORY';
      const exit: WorkerExit = { code: r.exitCode ?? null, signal: r.signal ?? null };
      if (this.#reason) exit.reason = this.#reason;
      if (!this.isReady) rejectReady(new KeynodeError('ERR_UNAVAILABLE', `worker exited before it was ready (${r.signal ?? r.exitCode}): ${this.#stderr.slice(-500)}`));
      for (const done of this.#releases.splice(0)) done(undefined);
      const onExit = this.onExit;
      this.onExit = IGNORE;
      this.onMessage = IGNORE;
      // After whoever awaits `ready` has seen it fail: a wake learns of the failure before the exit is handled.
      queueMicrotask(() => onExit(exit));
      return exit;
    });
  }

  /** Alive and not condemned: once the container decided to kill a worker, nothing it says counts. */
  get #listening(): boolean {
    return this.#alive && this.#reason === undefined;
  }

  #violation(e: unknown): void {
    this.#stderr += `\n[keynode] protocol violation: ${(e as Error).message}`;
    this.kill('ERR_WORKER_CRASHED');
  }

  /**
   * Handles the inbox a bounded amount per turn and per second. The pipe is paused while frames wait, so a
   * worker that writes faster than that blocks in its own write, not the container.
   */
  #drain(): void {
    if (this.#drainScheduled) return;
    let frames = 0;
    let bytes = 0;
    while (this.#inboxHead < this.#inbox.length && this.#listening) {
      const now = performance.now();
      const wait = Math.max(this.#frameRate.wait(now), this.#byteRate.wait(now));
      if (wait > 0 || frames >= FRAMES_PER_TURN || bytes >= BYTES_PER_TURN) return this.#drainLater(wait);
      const frame = this.#inbox[this.#inboxHead++]!;
      frames++;
      bytes += frame.length;
      this.#frameRate.spend(1, now);
      this.#byteRate.spend(frame.length, now);
      try {
        this.#handle(checkFromWorker(isResultOrIdleFrame(frame) ? decodeResultOrIdleFrame(frame) : decodeWorkerFrame(new Uint8Array(frame))));
      } catch (e) {
        return this.#violation(e);
      }
    }
    this.#inbox = [];
    this.#inboxHead = 0;
    this.#child.stdout!.resume();
  }

  #drainLater(ms: number): void {
    this.#drainScheduled = true;
    this.#child.stdout!.pause();
    const again = () => {
      this.#drainScheduled = false;
      if (this.#listening) return this.#drain();
      // Condemned meanwhile: the rest is dropped, and the pipe drains so that the exit is seen.
      this.#inbox = [];
      this.#child.stdout!.resume();
    };
    if (ms > 0) setTimeout(again, ms);
    else setImmediate(again);
  }

  /** The protocol's order, enforced: an honest worker never sends a frame the container does not expect now. */
  #handle(msg: FromWorker): void {
    if (!this.isReady && msg.type !== 'ready') throw new KeynodeError('ERR_BAD_MESSAGE', `${msg.type} before ready`);
    // A worker answers a release before anything else: frames behind it belong to the next node, and the
    // container must know that nothing of that node's eval ran until then (see mayHaveRun).
    if (this.#releasesSent > this.#releasesAnswered && msg.type !== 'released') throw new KeynodeError('ERR_BAD_MESSAGE', `${msg.type} before released`);
    switch (msg.type) {
      case 'ready':
        if (this.isReady) throw new KeynodeError('ERR_BAD_MESSAGE', 'ready twice');
        this.isReady = true;
        this.#onReady();
        return;
      case 'released': {
        const done = this.#releases.shift();
        if (!done) throw new KeynodeError('ERR_BAD_MESSAGE', 'released without a release');
        this.#releasesAnswered++;
        this.#busy();
        done(msg.heapUsed);
        return;
      }
      case 'idle':
        if (!this.#evalOut || !this.#resulted) throw new KeynodeError('ERR_BAD_MESSAGE', 'idle with no eval answered');
        this.#evalOut = false;
        this.#busy();
        break;
      case 'result':
        if (!this.#evalOut || this.#resulted) throw new KeynodeError('ERR_BAD_MESSAGE', 'a result with no eval in flight');
        this.#resulted = true;
        break;
      default:
        if (!this.#evalOut || this.#resulted) throw new KeynodeError('ERR_BAD_MESSAGE', `${msg.type} with no eval in flight`);
    }
    this.onMessage(msg);
  }

  /** Tells the CPU watch whether anything is asked of the worker now (its CPU then is the work's, not charged). */
  #busy(): void {
    this.#cpu?.busy(this.#evalOut || this.#releasesSent > this.#releasesAnswered);
  }

  static start(options: WorkerStartOptions): WorkerProcess {
    return new WorkerProcess(options);
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get alive(): boolean {
    return this.#alive;
  }

  get stderrTail(): string {
    return this.#stderr;
  }

  /** Alive, and never killed nor caught breaking the protocol: it may serve another node. */
  get reusable(): boolean {
    return this.#alive && this.#reason === undefined;
  }

  /**
   * Asks the worker to forget its node. Resolves with its heap size once it has, or undefined if it died or
   * did not answer within `timeoutMs` (then it is killed: a node that keeps its worker busy is not quiet).
   * The worker holds whatever is sent after the release until it has answered, so the next node's `become`
   * may follow at once.
   */
  release(timeoutMs: number): Promise<number | undefined> {
    if (!this.#listening) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.kill('ERR_WORKER_CRASHED'), timeoutMs);
      this.#releases.push((heapUsed) => {
        clearTimeout(timer);
        resolve(heapUsed);
      });
      this.#releasesSent++;
      this.#busy();
      this.send({ type: 'release' });
    });
  }

  /**
   * Sends an eval. The ticket tells, once the worker is gone, whether the eval may have run (mayHaveRun);
   * one that may have must never run again, whatever the worker said or did not say about it.
   */
  sendEval(msg: Extract<ToWorker, { type: 'eval' }>): EvalTicket {
    if (!this.#listening) return { written: false, gate: 0 };
    // Encoded before anything is marked in flight: a frame that cannot be built leaves this worker as it was.
    const bytes = encodeEvalFrame(msg);
    this.#evalOut = true;
    this.#resulted = false;
    this.logs.startEval();
    this.#busy();
    return { written: this.#write(bytes), gate: this.#releasesSent };
  }

  /**
   * Whether the eval of this ticket may have run: its frame was written, and the worker answered every
   * release sent before it (a worker holds the frames behind a release until it answers, and the container
   * kills one that sends anything else first, so until then no frame of that eval was acted upon).
   */
  mayHaveRun(ticket: EvalTicket): boolean {
    return ticket.written && this.#releasesAnswered >= ticket.gate;
  }

  /** Writes a frame; false when it was not written (the worker is gone or condemned). Evals go by sendEval. */
  send(msg: Exclude<ToWorker, { type: 'eval' }>): boolean {
    return this.#write(encodeFrame(encode(msg)));
  }

  #write(bytes: Buffer): boolean {
    if (!this.#listening) return false;
    const stdin = this.#child.stdin!;
    // Frames sent in one tick (become + eval, reply after reply) leave in one write: one wake-up of the worker.
    if (!this.#corked) {
      this.#corked = true;
      stdin.cork();
      process.nextTick(() => {
        this.#corked = false;
        stdin.uncork();
      });
    }
    stdin.write(bytes);
    // A worker that does not read what we send makes us hold it: past a bound that is its memory, not ours.
    if (this.#child.stdin!.writableLength > this.#maxBuffered) {
      this.#stderr += `\n[keynode] the worker stopped reading; ${this.#child.stdin!.writableLength} bytes were waiting for it`;
      this.kill('ERR_OUT_OF_MEMORY');
    }
    return true;
  }

  /** Kills at once; the first reason given is the one reported. */
  kill(reason: ErrorCode): void {
    this.#reason ??= reason;
    if (!this.#alive) return;
    this.#child.kill('SIGKILL');
    this.#cpu?.stop();
    // Frames waiting are not handled now; the pipe drains so that the exit is seen.
    if (!this.#drainScheduled) {
      this.#inbox = [];
      this.#inboxHead = 0;
      this.#child.stdout?.resume();
    }
  }

  /** Asks the worker to exit, and kills it if it has not within `graceMs`. */
  async stop(graceMs = 2000): Promise<WorkerExit> {
    if (this.#alive) {
      this.send({ type: 'stop' });
      this.#child.stdin!.end();
      const timer = setTimeout(() => this.kill('ERR_UNAVAILABLE'), graceMs);
      const exit = await this.exited;
      clearTimeout(timer);
      return exit;
    }
    return this.exited;
  }

  /** Resident memory in MB, read from /proc (Linux); undefined where it cannot be read. */
  rssMB(): number | undefined {
    if (!this.#alive || this.pid === undefined) return undefined;
    try {
      this.#statm ??= openSync(`/proc/${this.pid}/statm`, 'r');
      const n = readSync(this.#statm, this.#statmBuf, 0, this.#statmBuf.length, 0);
      const resident = Number(this.#statmBuf.toString('latin1', 0, n).split(' ')[1]);
      return Number.isFinite(resident) ? (resident * PAGE_SIZE) / (1024 * 1024) : undefined;
    } catch {
      return undefined;
    }
  }
}
