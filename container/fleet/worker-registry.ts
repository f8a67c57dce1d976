/**
 * @module container/fleet/worker-registry
 * Which processes are this container's workers, recorded where a worker cannot change it: one file per live
 * worker in the data directory, named by its pid and holding the machine's boot ID and the process's start
 * time (/proc/<pid>/stat field 22, set by the kernel at fork). A worker can rewrite its command line and
 * title, not these. A container killed with -9 leaves its files behind; the next start on the same data
 * directory kills exactly the processes they name that still run with that start time in that boot, and
 * never a process that merely got a recycled pid.
 */
import { mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or undefined if there is no such process. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // After the last ')': the command name may hold spaces and parentheses. `rest` starts at field 3.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // A zombie has exited already: nothing to kill, and its pid is not to be trusted once reaped.
    return rest[0] === 'Z' ? undefined : rest[19];
  } catch {
    return undefined;
  }
}

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined; // not Linux
  }
}

export class WorkerRegistry {
  readonly #dir: string;
  readonly #boot: string;

  private constructor(dir: string, boot: string) {
    this.#dir = dir;
    this.#boot = boot;
  }

  /**
   * Kills the workers a previous run left in `dir` (the caller holds the data directory, so that run is
   * gone) and returns a registry for this run; none where /proc cannot be read (orphans there exit on their
   * own when they next read their closed stdin, unless their sandbox broke).
   */
  static open(dir: string): { registry: WorkerRegistry | undefined; killed: number } {
    const boot = bootId();
    if (boot === undefined) return { registry: undefined, killed: 0 };
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    let killed = 0;
    for (const name of readdirSync(dir)) {
      const file = join(dir, name);
      if (/^\d+$/.test(name)) {
        let text = '';
        try {
          text = readFileSync(file, 'utf8');
        } catch {
          // not a file of ours
        }
        const [recordedBoot, started] = text.trim().split(' ');
        const pid = Number(name);
        if (recordedBoot === boot && started !== undefined && startTimeOf(pid) === started) {
          try {
            process.kill(pid, 'SIGKILL');
            killed++;
          } catch {
            // gone meanwhile
          }
        }
      }
      try {
        unlinkSync(file);
      } catch {
        // gone meanwhile
      }
    }
    return { registry: new WorkerRegistry(dir, boot), killed };
  }

  /** Records a worker just started; false when it cannot be recorded (its caller must not keep it). */
  record(pid: number): boolean {
    const started = startTimeOf(pid);
    if (started === undefined) return false;
    try {
      writeFileSync(join(this.#dir, String(pid)), `${this.#boot} ${started}\n`, { mode: 0o600 });
      return true;
    } catch {
      return false;
    }
  }

  forget(pid: number): void {
    try {
      unlinkSync(join(this.#dir, String(pid)));
    } catch {
      // never recorded, or swept already
    }
  }
}
