/**
 * @module bench/harness
 * What every benchmark section shares: the report (rows and notes), temp data directories, containers in
 * this process or forked into their own, and cleanup that runs even when a section fails or on Ctrl-C.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, Identity, type Client, type NodeHandle } from '../index.js';
import { Container, type ContainerOptions } from '../container/index.js';
import { CONTAINER_ALLOCATOR_ENV } from '../cli/allocator.js';
import { fmt, median, pooled, type Row, type Target } from './stats.js';

export const QUICK = process.env.BENCH_QUICK === '1';
export const RUNS = QUICK ? 3 : 5;

export const rows: Row[] = [];
export const notes: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
let root = '';
let dirCount = 0;

export function row(metric: string, unit: string, perRun: number[], target?: Target): void {
  const r: Row = { metric, unit, value: median(perRun), runs: perRun.length, perRun };
  if (target) r.target = target;
  rows.push(r);
  log(`  ${metric}: ${fmt(r.value)} ${unit} (runs: ${perRun.map(fmt).join(', ')})`);
}

export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

export function onCleanup(f: () => Promise<unknown>): void {
  cleanups.push(f);
}

export async function openRoot(): Promise<void> {
  root = await mkdtemp(join(tmpdir(), 'keynode-bench-'));
}

export async function cleanup(): Promise<void> {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
  if (root) await rm(root, { recursive: true, force: true }).catch(() => {});
}

export async function dataDir(name: string): Promise<string> {
  return join(root, `${String(++dirCount).padStart(2, '0')}-${name}`);
}

export interface Started {
  c: Container;
  client: Client;
  close(): Promise<void>;
}

/** An in-process container and a client signed by its operator; closed in `finally` and on SIGINT. */
export async function start(name: string, options: Partial<ContainerOptions> = {}, clientOptions: { connections?: number; pipelining?: number } = {}): Promise<Started> {
  const c = await Container.start({ port: 0, data: await dataDir(name), logLevel: 'silent', idleTimeoutMs: 600_000, ...options });
  const client = await connect(c.url, { identity: c.operator, ...clientOptions });
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await client.close().catch(() => {});
      await c.close().catch(() => {});
    })());
  cleanups.push(close);
  return { c, client, close };
}

/** Wakes the nodes (one eval each, `concurrency` at a time). */
export async function wakeAll(client: Client, nodes: NodeHandle[], concurrency: number): Promise<void> {
  await pooled(nodes.length, concurrency, (i) => client.at(nodes[i]!, () => 1));
}

// --- a container in its own process -------------------------------------------------------------

const CHILD = fileURLToPath(new URL('./container-child.js', import.meta.url));

export interface ChildContainer {
  proc: ChildProcess;
  url: string;
  startMs: number;
  rss(): Promise<{ rss: number; heapUsed: number }>;
  /** CPU time the container process has used so far, all threads. */
  cpuMs(): Promise<number>;
  /** Where its resident memory is (bench/container-child.ts `breakdown`), without a forced collection. */
  mem(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

export async function forkContainer(data: string, options: Record<string, unknown> = {}): Promise<ChildContainer> {
  // The allocator settings `keynode start` gives itself (cli/allocator.ts): the container as it is deployed.
  const env = { ...CONTAINER_ALLOCATOR_ENV, ...process.env };
  const proc = fork(CHILD, [data, JSON.stringify(options)], { execArgv: ['--expose-gc'], env, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const exited = once(proc, 'exit');
  const kill = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  };
  cleanups.push(kill);
  const [msg] = (await Promise.race([once(proc, 'message'), exited.then(() => [{ type: 'exited' }])])) as [{ type: string; url: string; startMs: number }];
  if (msg.type !== 'listening') throw new Error('the benchmark container process exited before it listened');
  return {
    proc,
    url: msg.url,
    startMs: msg.startMs,
    async rss() {
      proc.send({ type: 'gc' });
      const [m] = (await once(proc, 'message')) as [{ rss: number; heapUsed: number }];
      return m;
    },
    async mem() {
      proc.send({ type: 'mem' });
      const [m] = (await once(proc, 'message')) as [Record<string, number>];
      return m;
    },
    async cpuMs() {
      proc.send({ type: 'cpu' });
      const [m] = (await once(proc, 'message')) as [{ ms: number }];
      return m.ms;
    },
    async close() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.send({ type: 'close' });
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}


export interface Forked {
  child: ChildContainer;
  client: Client;
  /** The container's counters (`keynode stats`). */
  stats(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

/** A container in its own process, as deployed, and a client of its operator in this one. */
export async function startForked(name: string, options: Partial<ContainerOptions> = {}, clientOptions: { connections?: number } = {}): Promise<Forked> {
  const data = await dataDir(name);
  const child = await forkContainer(data, options);
  const client = await connect(child.url, { identity: await Identity.load(join(data, 'operator.key')), ...clientOptions });
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await client.close().catch(() => {});
      await child.close().catch(() => {});
    })());
  cleanups.push(close);
  return { child, client, stats: async () => (await client.request('stats', {})) as Record<string, number>, close };
}
