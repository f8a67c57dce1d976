/**
 * Real containers for tests: in this process (fast, lets a test reach the runtime), or as a child process
 * started with the CLI (for kill -9 and restarts). Every one is stopped after its test file, pass or fail.
 */
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll } from 'vitest';
import { connect, Identity, type Client } from 'keynode';
import { Container, type ContainerOptions } from 'keynode/container';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const cleanups: (() => Promise<unknown>)[] = [];

afterAll(async () => {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
});

/** Registers cleanup to run after the test file, even when it fails. */
export function defer(f: () => Promise<unknown>): void {
  cleanups.push(f);
}

export async function tempDir(prefix = 'keynode-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  defer(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface TestContainer {
  container: Container;
  url: string;
  operator: Identity;
  data: string;
  /** A client signed by the operator. */
  client: Client;
}

/** A container in this process on a free loopback port with fresh data. */
export async function startContainer(options: Partial<ContainerOptions> = {}): Promise<TestContainer> {
  const data = options.data ?? (await tempDir());
  // Lifetimes in tests run on millisecond periods.
  const container = await Container.start({ port: 0, logLevel: 'silent', poolMin: 1, minPeriodMs: 10, ...options, data });
  defer(() => container.close());
  // Over TLS, the operator's client trusts the container's own (self-signed, in tests) certificate.
  const ca = options.tlsCert ? await readFile(options.tlsCert) : undefined;
  const client = await connect(container.url, { identity: container.operator, ...(ca ? { ca } : {}) });
  defer(() => client.close());
  return { container, url: container.url, operator: container.operator, data, client };
}

export interface ContainerProcess {
  url: string;
  data: string;
  child: ResultPromise;
  operator: Identity;
  /** Resolves with the first JSON log line after this call whose `msg` is `msg` (and that `match` accepts). */
  logged(msg: string, match?: (rec: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** kill -9 and wait for the exit. */
  kill9(): Promise<void>;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
}

/**
 * A container as its own process (`keynode start`), for crash tests. Resolves once it is listening.
 * `asProgram`: run as the `keynode` program runs (through its shell line), in exactly `env`, not beside ours.
 */
export async function startContainerProcess(data: string, flags: string[] = [], env: Record<string, string> = {}, how: { asProgram?: boolean } = {}): Promise<ContainerProcess> {
  const child = execa(how.asProgram ? '/bin/sh' : process.execPath, [CLI, 'start', '--port', '0', '--data', data, '--log-level', 'info', ...flags], {
    env,
    extendEnv: !how.asProgram,
    buffer: false,
    reject: false,
    cleanup: true,
    stdin: 'ignore',
  });
  defer(async () => {
    child.kill('SIGKILL');
    await child;
  });
  let buffered = '';
  let stderr = '';
  // After start-up every log line goes to whoever waits for one (crash tests wait for a line, not a sleep).
  const waiters = new Set<(rec: Record<string, unknown>) => void>();
  let pending = '';
  const onLog = (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      for (const w of [...waiters]) w(rec);
    }
  };
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const line of buffered.split('\n')) {
        try {
          const rec = JSON.parse(line) as { msg?: string; url?: string };
          if (rec.msg === 'keynode container started' && rec.url) {
            child.stdout!.off('data', onData);
            child.stdout!.on('data', onLog);
            resolve(rec.url);
            return;
          }
        } catch {
          // a partial line
        }
      }
    };
    child.stdout!.on('data', onData);
    void child.then((r) => reject(new Error(`container exited before it started (${r.exitCode ?? r.signal}): ${stderr}`)));
  });
  const operator = await Identity.load(join(data, 'operator.key'));
  return {
    url,
    data,
    child,
    operator,
    logged(msg, match) {
      return new Promise((resolve, reject) => {
        const w = (rec: Record<string, unknown>) => {
          if (rec.msg !== msg || (match && !match(rec))) return;
          waiters.delete(w);
          resolve(rec);
        };
        waiters.add(w);
        void child.then(() => {
          if (waiters.delete(w)) reject(new Error(`the container exited before it logged "${msg}"`));
        });
      });
    },
    async kill9() {
      child.kill('SIGKILL');
      await child;
    },
    async stop() {
      child.kill('SIGTERM');
      await child;
    },
  };
}

/** Resolves when `predicate` holds, checking after each event the container's clock gives; bounded. */
export async function until(predicate: () => Promise<boolean> | boolean, timeoutMs = 10_000, label = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** True when a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export { once };
