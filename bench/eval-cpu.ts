/**
 * @module bench/eval-cpu
 * CPU time per warm eval, split by process: the client (this process), the container (forked, as deployed)
 * and its workers, for the shapes of the eval section: sequential evals on one node, `ctx.at` to a node on
 * the same container and on a second container, and 64 in flight over 100 nodes. On a shared machine
 * wall-clock figures swing with the neighbours' load; the CPU an eval costs each process swings much less, so
 * this is how a change to the eval path is judged (README › Benchmarks). Each thread's run time is read from
 * /proc/<pid>/task/<tid>/schedstat (nanoseconds), summed over the threads alive at both ends of a run.
 *
 * - `node dist/bench/eval-cpu.js [shapes] [evals] [runs]`: shapes is a comma list of seq, local, remote, many
 *   (default all); one JSON line per run and shape.
 * - `node dist/bench/eval-cpu.js ab <root A> <root B> [shapes] [evals] [blocks]`: two builds side by side,
 *   each root a checkout with its dist/ built and this file in its dist/bench/. Each build runs in its own
 *   processes, set up and warmed once; then blocks of `evals` alternate between the two (the order flips every
 *   block), so both meet the machine's load at the same moments. Prints the median per block of each figure.
 * - env NODES and LANES change the `many` shape (100 nodes, 64 in flight): a worker's CPU per eval grows with
 *   the number of processes taking turns (their caches evict each other), which NODES=10 against 100 shows.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, Identity, Lifetime, type Client, type NodeHandle } from '../index.js';
import { cleanup, dataDir, forkContainer, openRoot, type ChildContainer } from './harness.js';
import { median, percentile, pooled } from './stats.js';

const AB = process.argv[2] === 'ab';
const [shapesArg = 'seq,local,remote,many', evalsArg = '2000', runsArg = '3'] = process.argv.slice(AB ? 5 : 2);
const SHAPES = new Set(shapesArg.split(','));
const EVALS = Number(evalsArg);
const RUNS = Number(runsArg);
/** The `many` shape's nodes and evals in flight (env NODES, LANES): the target's 100 and 64 by default. */
const NODES = Number(process.env.NODES ?? 100);
const LANES = Number(process.env.LANES ?? 64);

/** Nanoseconds of CPU per thread of a process, keyed `pid/tid`. */
function threadTimes(pid: number, into: Map<string, number>): void {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return;
  }
  for (const tid of tids) {
    try {
      into.set(`${pid}/${tid}`, Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]));
    } catch {
      // the thread ended between the listing and the read
    }
  }
}

function childrenOf(pid: number): number[] {
  const out = new Set<number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (c) out.add(Number(c));
    }
  } catch {
    // gone
  }
  return [...out];
}

interface Snapshot {
  client: Map<string, number>;
  containers: Map<string, number>;
  workers: Map<string, number>;
  /** Page faults (minor and major) per worker process, keyed by pid. */
  faults: Map<string, number>;
}

/** Minor plus major page faults of a process so far (/proc/<pid>/stat fields 10 and 12). */
function faultsOf(pid: number, into: Map<string, number>): void {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    into.set(String(pid), Number(f[7]) + Number(f[9]));
  } catch {
    // gone
  }
}

function snapshot(containers: ChildContainer[]): Snapshot {
  const s: Snapshot = { client: new Map(), containers: new Map(), workers: new Map(), faults: new Map() };
  threadTimes(process.pid, s.client);
  for (const c of containers) {
    threadTimes(c.proc.pid!, s.containers);
    for (const w of childrenOf(c.proc.pid!)) {
      threadTimes(w, s.workers);
      faultsOf(w, s.faults);
    }
  }
  return s;
}

function delta(a: Map<string, number>, b: Map<string, number>): number {
  let ns = 0;
  for (const [k, v] of b) {
    const before = a.get(k);
    if (before !== undefined) ns += v - before;
  }
  return ns;
}

type Line = Record<string, number | string>;

async function measure(label: string, containers: ChildContainer[], n: number, run: () => Promise<number[]>, stats?: () => Promise<Record<string, number>>): Promise<Line> {
  const w0 = (await stats?.())?.wakes;
  const s0 = snapshot(containers);
  const t0 = performance.now();
  const samples = await run();
  const wall = performance.now() - t0;
  const s1 = snapshot(containers);
  const us = (ns: number) => Math.round(ns / n / 1000);
  const client = us(delta(s0.client, s1.client));
  const container = us(delta(s0.containers, s1.containers));
  const workers = us(delta(s0.workers, s1.workers));
  const line: Line = { shape: label, evals: n, clientUs: client, containerUs: container, workersUs: workers, totalUs: client + container + workers };
  // Page faults of the workers per eval: a worker that gives memory back between evals takes it again, fault by fault.
  line.workerFaults = +(delta(s0.faults, s1.faults) / n).toFixed(1);
  if (samples.length) Object.assign(line, { p50ms: +percentile(samples, 50).toFixed(3), p99ms: +percentile(samples, 99).toFixed(3) });
  else line.evalsPerS = Math.round(n / (wall / 1000));
  // Wakes during the run: a node without its own process takes one from another (not a warm eval any more).
  if (w0 !== undefined) line.wakes = (await stats!())!.wakes! - w0;
  return line;
}

async function sequential(f: () => Promise<unknown>, n: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await f();
    samples.push(performance.now() - t);
  }
  return samples;
}

async function client(child: ChildContainer, data: string, connections = 1): Promise<Client> {
  return connect(child.url, { identity: await Identity.load(join(data, 'operator.key')), connections });
}

async function main(): Promise<void> {
  await openRoot();
  try {
    const dataA = await dataDir('cpu-a');
    const a = await forkContainer(dataA, { poolMin: 4 });
    const ca = await client(a, dataA, 100);
    const lifetime = Lifetime.root();
    const containers = [a];
    let b: ChildContainer | undefined;
    let cb: Client | undefined;
    if (SHAPES.has('remote')) {
      const dataB = await dataDir('cpu-b');
      b = await forkContainer(dataB, { poolMin: 1 });
      cb = await client(b, dataB);
      containers.push(b);
    }
    const one = await ca.spawn({ lifetime });
    const caller = await ca.spawn({ lifetime, sandbox: { contacts: 'any' } });
    const local = await ca.spawn({ lifetime, acl: [caller.url] });
    const remote = cb ? await cb.spawn({ lifetime, acl: [caller.url] }) : undefined;
    const plain = () => ca.at(one, () => 1);
    const nested = (t: string) => () => ca.at(caller, (ctx, u: string) => ctx.at(u, () => 1), t);
    let nodes: NodeHandle[] = [];
    if (SHAPES.has('many')) {
      nodes = await ca.spawnMany(NODES, { lifetime });
      await pooled(nodes.length, 8, (i) => ca.at(nodes[i]!, () => 1));
    }
    const many = async (n: number): Promise<number[]> => {
      let next = 0;
      await Promise.all(
        Array.from({ length: LANES }, async (_, lane) => {
          for (let k = lane; next < n; k += LANES) {
            next++;
            await ca.at(nodes[k % nodes.length]!, () => 1);
          }
        }),
      );
      return [];
    };
    const shapes: [string, (n: number) => Promise<number[]>][] = [
      ['seq', (n) => sequential(plain, n)],
      ['local', (n) => sequential(nested(local.url), n)],
      ['remote', (n) => sequential(nested(remote!.url), n)],
      ['many', many],
    ];
    for (const [name, f] of shapes) if (SHAPES.has(name)) await f(name === 'many' ? 5 * EVALS : EVALS / 2); // warm-up
    if (SHAPES.has('many')) {
      // As the eval section does: until every node holds a process of its own (they take each other's until
      // the fleet has grown to fit them), so that what is measured is warm evals, not wakes.
      const stats = async () => (await ca.request('stats', {})) as Record<string, number>;
      const until = performance.now() + 120_000;
      while ((await stats()).awake! < nodes.length && performance.now() < until) await many(1000);
      await many(2000);
      process.stderr.write(`after the warm-up: ${JSON.stringify(await stats())}\n`);
    }
    const run = (name: string): Promise<Line> => {
      const n = name === 'many' ? 5 * EVALS : EVALS;
      return measure(name, containers, n, () => shapes.find(([s]) => s === name)![1](n), async () => (await ca.request('stats', {})) as Record<string, number>);
    };
    if (process.send) {
      // A runner of the `ab` mode: one block at a time, when told.
      process.send({ type: 'ready' });
      for (;;) {
        const [msg] = (await once(process, 'message')) as [{ type: string; shape?: string }];
        if (msg.type !== 'run') break;
        process.send({ type: 'result', line: await run(msg.shape!) });
      }
    } else {
      for (let r = 0; r < RUNS; r++) for (const [name] of shapes) if (SHAPES.has(name)) process.stdout.write(`${JSON.stringify(await run(name))}\n`);
    }
    await ca.close();
    await cb?.close();
  } finally {
    await cleanup();
    if (process.send) process.disconnect();
  }
}

/** The `ab` mode: a runner per build, blocks alternated, medians printed. */
async function ab(roots: string[]): Promise<void> {
  const runners: { proc: ChildProcess; exited: Promise<unknown> }[] = [];
  const next = async (r: (typeof runners)[number]): Promise<{ type: string; line?: Line }> => {
    const [reply] = (await Promise.race([once(r.proc, 'message'), r.exited.then(() => [{ type: 'exited' }])])) as [{ type: string; line?: Line }];
    if (reply.type === 'exited') throw new Error('a runner exited');
    return reply;
  };
  const ask = (r: (typeof runners)[number], msg: object): Promise<{ type: string; line?: Line }> => {
    r.proc.send(msg);
    return next(r);
  };
  try {
    for (const root of roots) {
      const proc = fork(join(root, 'dist/bench/eval-cpu.js'), [shapesArg, evalsArg], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const r = { proc, exited: once(proc, 'exit') };
      runners.push(r);
      if ((await next(r)).type !== 'ready') throw new Error(`the runner of ${root} did not say it was ready`);
    }
    const lines: { root: string; line: Line }[] = [];
    for (let b = 0; b < Number(runsArg); b++) {
      for (const shape of SHAPES) {
        for (const i of b % 2 ? [1, 0] : [0, 1]) lines.push({ root: roots[i]!, line: (await ask(runners[i]!, { type: 'run', shape })).line! });
      }
    }
    for (const shape of SHAPES) {
      const per = roots.map((root) => lines.filter((l) => l.root === root && l.line.shape === shape).map((l) => l.line));
      for (const [i, root] of roots.entries()) {
        const mine = per[i]!;
        const out: Record<string, number> = {};
        for (const k of Object.keys(mine[0]!)) if (typeof mine[0]![k] === 'number') out[k] = median(mine.map((l) => l[k] as number));
        process.stdout.write(`${JSON.stringify({ root, shape, blocks: mine.length, ...out, totalsPerBlock: mine.map((l) => l.totalUs).join(' ') })}\n`);
      }
      // Block by block, B against the A block run beside it: the machine's load cancels out of each ratio.
      const ratio = (k: string) => +median(per[1]!.map((l, b) => (l[k] as number) / (per[0]![b]![k] as number))).toFixed(3);
      process.stdout.write(`${JSON.stringify({ shape, 'B/A median of paired blocks': { client: ratio('clientUs'), container: ratio('containerUs'), workers: ratio('workersUs'), total: ratio('totalUs'), ...(per[0]![0]!.p50ms !== undefined ? { p50: ratio('p50ms') } : { evalsPerS: ratio('evalsPerS') }) } })}\n`);
    }
  } finally {
    for (const r of runners) if (r.proc.exitCode === null) r.proc.send({ type: 'close' });
    await Promise.all(runners.map((r) => r.exited));
  }
}

if (AB) {
  const roots = process.argv.slice(3, 5);
  if (roots.length !== 2) {
    process.stderr.write(`usage: node ${fileURLToPath(import.meta.url)} ab <root A> <root B> [shapes] [evals] [blocks]\n`);
    process.exit(2);
  }
  await ab(roots);
} else await main();
