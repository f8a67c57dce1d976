/**
 * @module bench/run
 * `npm run bench`: measures keynode against the targets of SPEC §8 and prints a table. It reports and never
 * asserts. Each metric is the median of several runs after a short warm-up.
 *
 * Environment:
 * - BENCH_QUICK=1   smaller samples (about 20 s on a quiet 2-core machine; the full run about 1 to 2 minutes;
 *                   both take 2 to 3 times longer when the calibration line shows the machine loaded);
 * - BENCH_ONLY=a,b  only these sections: spawn, eval, wake, memory;
 * - BENCH_MEMORY_NODES=n  sleeping nodes for the memory section (default 100,000; 10,000 when quick).
 *
 * The spawn, eval and wake sections run the container in this process (as `Container.start` embeds it), so
 * client and container share one event loop. The memory section forks the container into its own process
 * (bench/container-child.ts) so its resident memory is the container's alone.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, Identity, Lifetime, type Client, type NodeHandle } from '../index.js';
import { Container } from '../container/index.js';
import { fmt, median, percentile, pooled, renderTable, sleep, type Row, type Target } from './stats.js';

const QUICK = process.env.BENCH_QUICK === '1';
const ONLY = new Set((process.env.BENCH_ONLY ?? 'spawn,eval,wake,memory').split(',').map((s) => s.trim()).filter(Boolean));
const RUNS = QUICK ? 3 : 5;

/** Sample sizes per run: [quick, full]. */
const SIZE = {
  spawnSingle: QUICK ? 300 : 600,
  spawnConcurrency: 32,
  spawnBatches: QUICK ? 2 : 3,
  batch: 1000,
  evalSequential: QUICK ? 300 : 1000,
  evalWarmup: QUICK ? 100 : 300,
  throughputNodes: QUICK ? 50 : 100,
  throughputMs: QUICK ? 800 : 2000,
  wakePoolSamples: QUICK ? 3 : 5,
  wakeColdSamples: QUICK ? 2 : 4,
  memoryNodes: Number(process.env.BENCH_MEMORY_NODES ?? (QUICK ? 10_000 : 100_000)),
  memoryBatch: QUICK ? 5_000 : 10_000,
};

const rows: Row[] = [];
const notes: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
let root = '';
let dirCount = 0;

function row(metric: string, unit: string, perRun: number[], target?: Target): void {
  const r: Row = { metric, unit, value: median(perRun), runs: perRun.length, perRun };
  if (target) r.target = target;
  rows.push(r);
  log(`  ${metric}: ${fmt(r.value)} ${unit} (runs: ${perRun.map(fmt).join(', ')})`);
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function dataDir(name: string): Promise<string> {
  return join(root, `${String(++dirCount).padStart(2, '0')}-${name}`);
}

interface Started {
  c: Container;
  client: Client;
  close(): Promise<void>;
}

/** An in-process container and a client signed by its operator; closed in `finally` and on SIGINT. */
async function start(name: string, poolSize: number, clientOptions: { connections?: number; pipelining?: number } = {}): Promise<Started> {
  const c = await Container.start({ port: 0, data: await dataDir(name), logLevel: 'silent', poolMin: poolSize, idleTimeoutMs: 600_000 });
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
async function wakeAll(client: Client, nodes: NodeHandle[], concurrency: number): Promise<void> {
  await pooled(nodes.length, concurrency, (i) => client.at(nodes[i]!, () => 1));
}

// --- 1. spawn --------------------------------------------------------------------------------------

async function benchSpawn(): Promise<void> {
  log('spawn');
  const { client, close } = await start('spawn', 0, { connections: SIZE.spawnConcurrency });
  try {
    const lifetime = Lifetime.root();
    await pooled(100, SIZE.spawnConcurrency, () => client.spawn({ lifetime })); // warm-up
    const single: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const t0 = performance.now();
      await pooled(SIZE.spawnSingle, SIZE.spawnConcurrency, () => client.spawn({ lifetime }));
      single.push(SIZE.spawnSingle / ((performance.now() - t0) / 1000));
    }
    row(`spawn, single calls (concurrency ${SIZE.spawnConcurrency})`, 'nodes/s', single, { kind: 'min', value: 10_000 });

    await client.spawnMany(SIZE.batch, { lifetime }); // warm-up
    const many: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const t0 = performance.now();
      for (let b = 0; b < SIZE.spawnBatches; b++) await client.spawnMany(SIZE.batch, { lifetime });
      many.push((SIZE.spawnBatches * SIZE.batch) / ((performance.now() - t0) / 1000));
    }
    row(`spawn, spawnMany batches of ${SIZE.batch}`, 'nodes/s', many, { kind: 'min', value: 10_000 });
  } finally {
    await close();
  }
}

// --- 2. warm eval ----------------------------------------------------------------------------------

async function benchEval(): Promise<void> {
  log('warm eval');
  const { c, client, close } = await start('eval', 4, { connections: SIZE.throughputNodes });
  const pids = new Set<number>();
  c.on('wake', (_id, pid) => pids.add(pid));
  try {
    const lifetime = Lifetime.root();
    const one = await client.spawn({ lifetime });
    await client.at(one, () => 1); // wake
    for (let i = 0; i < SIZE.evalWarmup; i++) await client.at(one, () => 1);
    const p50: number[] = [];
    const p99: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const samples: number[] = [];
      for (let i = 0; i < SIZE.evalSequential; i++) {
        const t0 = performance.now();
        await client.at(one, () => 1);
        samples.push(performance.now() - t0);
      }
      p50.push(percentile(samples, 50));
      p99.push(percentile(samples, 99));
    }
    row('warm eval latency p50 (sequential, 1 node)', 'ms', p50, { kind: 'max', value: 0.5 });
    row('warm eval latency p99 (sequential, 1 node)', 'ms', p99);

    const nodes = await client.spawnMany(SIZE.throughputNodes, { lifetime });
    const tw = performance.now();
    await wakeAll(client, nodes, 8);
    log(`  (woke ${nodes.length} nodes in ${fmt(performance.now() - tw)} ms)`);
    const throughput: number[] = [];
    const measure = async (ms: number): Promise<number> => {
      let done = 0;
      const t0 = performance.now();
      const end = t0 + ms;
      // One loop per node: every node has one eval in flight at a time, as a node runs one eval at a time.
      await Promise.all(
        nodes.map(async (n) => {
          while (performance.now() < end) {
            await client.at(n, () => 1);
            done++;
          }
        }),
      );
      return done / ((performance.now() - t0) / 1000);
    };
    await measure(Math.min(500, SIZE.throughputMs)); // warm-up
    for (let r = 0; r < RUNS; r++) throughput.push(await measure(SIZE.throughputMs));
    row(`warm eval throughput (${nodes.length} awake nodes, 1 in flight each)`, 'evals/s', throughput, { kind: 'min', value: 5_000 });

    // Density: proportional memory (PSS: shared pages split among their sharers) of the awake workers.
    const pss: number[] = [];
    for (const pid of pids) {
      const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
      const kb = /^Pss:\s+(\d+)/m.exec(text)?.[1];
      if (kb !== undefined) pss.push(Number(kb) / 1024);
    }
    if (pss.length) {
      row(`awake idle node proportional memory (PSS, median of ${pss.length} workers)`, 'MB', [median(pss)], { kind: 'max', value: 20 });
    } else notes.push('density: /proc/<pid>/smaps_rollup is not readable here; PSS not measured');
  } finally {
    await close();
  }
}

// --- 3. wake ---------------------------------------------------------------------------------------

/**
 * Each sample evaluates on a node spawned ahead and never woken, so it is a real wake (the `wake` event
 * confirms it). Before a sample the pool is refilled with `warm()` so each wake finds a ready worker and a
 * quiet machine; afterwards the node is destroyed, so awake workers do not pile up.
 */
async function benchWake(poolSize: number, samplesPerRun: number, warmup: number): Promise<number[]> {
  const { c, client, close } = await start(poolSize ? 'wake-pool' : 'wake-cold', poolSize);
  try {
    const nodes = await client.spawnMany(RUNS * samplesPerRun + warmup, { lifetime: Lifetime.root() });
    let wakes = 0;
    let wokeAt = 0;
    c.on('wake', () => {
      wakes++;
      wokeAt = performance.now();
    });
    const toWake: number[] = [];
    let unexpected = 0;
    const sample = async (node: NodeHandle): Promise<number> => {
      await c.warm();
      await sleep(20); // let the refilled worker's start-up output settle
      const before = wakes;
      const t0 = performance.now();
      await client.at(node, () => 1);
      const ms = performance.now() - t0;
      if (wakes !== before + 1) unexpected++;
      else toWake.push(wokeAt - t0);
      await client.destroy(node);
      return ms;
    };
    let k = 0;
    for (let i = 0; i < warmup; i++) await sample(nodes[k++]!);
    const perRun: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const samples: number[] = [];
      for (let i = 0; i < samplesPerRun; i++) samples.push(await sample(nodes[k++]!));
      perRun.push(median(samples));
    }
    if (unexpected) notes.push(`wake (pool ${poolSize}): ${unexpected} samples did not see exactly one 'wake' event`);
    notes.push(`wake (pool ${poolSize}): p50 ${fmt(median(toWake))} ms from the request to the 'wake' event (worker ready, 'become' sent), the rest is become + eval + reply`);
    return perRun;
  } finally {
    await close();
  }
}

async function benchWakes(): Promise<void> {
  log('wake');
  row('wake p50, warm pool (asleep → first result)', 'ms', await benchWake(2, SIZE.wakePoolSamples, 2), { kind: 'max', value: 2 });
  row('wake p50, no pool (poolSize 0)', 'ms', await benchWake(0, SIZE.wakeColdSamples, 1), { kind: 'max', value: 150 });
}

// --- 4. memory and restart (container in its own process) -----------------------------------------

const CHILD = fileURLToPath(new URL('./container-child.js', import.meta.url));

interface ChildContainer {
  proc: ChildProcess;
  url: string;
  startMs: number;
  rss(): Promise<{ rss: number; heapUsed: number }>;
  close(): Promise<void>;
}

async function forkContainer(data: string): Promise<ChildContainer> {
  const proc = fork(CHILD, [data, '0'], { execArgv: ['--expose-gc'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
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
    async close() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.send({ type: 'close' });
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function benchMemory(): Promise<void> {
  log('memory');
  const data = await dataDir('memory');
  const MB = 1024 * 1024;
  let child = await forkContainer(data);
  const operator = await Identity.load(join(data, 'operator.key'));
  let client = await connect(child.url, { identity: operator, connections: 4 });
  let first: NodeHandle | undefined;
  try {
    await client.spawnMany(100, { lifetime: Lifetime.root() }); // warm-up (code paths, LevelDB)
    const base = await child.rss();
    const rates: number[] = [];
    // RSS after GC at each batch: the first batch brings a one-off step (malloc arenas, LevelDB memtable and
    // caches), so the per-node cost is the slope after it, not the growth from empty.
    const points: { nodes: number; rss: number }[] = [];
    let spawned = 0;
    while (spawned < SIZE.memoryNodes) {
      const n = Math.min(SIZE.memoryBatch, SIZE.memoryNodes - spawned);
      const t0 = performance.now();
      const nodes = await client.spawnMany(n, { lifetime: Lifetime.root() });
      rates.push(n / ((performance.now() - t0) / 1000));
      first ??= nodes[0];
      spawned += n;
      points.push({ nodes: spawned, rss: (await child.rss()).rss });
    }
    const after = await child.rss();
    const nodesK = SIZE.memoryNodes / 1000;
    row(`spawn, spawnMany batches of ${SIZE.memoryBatch} (container in own process)`, 'nodes/s', rates, { kind: 'min', value: 10_000 });
    row(`container RSS, empty (after GC)`, 'MB', [base.rss / MB]);
    row(`container RSS with ${nodesK}k sleeping nodes (after GC)`, 'MB', [after.rss / MB], { kind: 'max', value: 300, note: '(for 1M)' });
    const p0 = points[0]!;
    const pN = points[points.length - 1]!;
    const slope = pN.nodes > p0.nodes ? (pN.rss - p0.rss) / (pN.nodes - p0.nodes) : (pN.rss - base.rss) / pN.nodes;
    if (SIZE.memoryNodes >= 50_000) {
      row(`container RSS extrapolated to 1M sleeping nodes`, 'MB', [(after.rss + slope * (1_000_000 - SIZE.memoryNodes)) / MB], { kind: 'max', value: 300 });
    } else notes.push(`memory: no 1M extrapolation from ${nodesK}k nodes (the first ~20k nodes bring a one-off step of ~60 MB that a short run cannot separate from the per-node slope); run without BENCH_QUICK`);
    notes.push(
      `memory: heap used ${fmt(base.heapUsed / MB)} MB empty → ${fmt(after.heapUsed / MB)} MB with ${nodesK}k nodes; RSS after GC by nodes: ` +
        `0: ${fmt(base.rss / MB)} MB, ${points.map((p) => `${fmt(p.nodes / 1000)}k: ${fmt(p.rss / MB)} MB`).join(', ')}; marginal ${fmt(slope)} bytes/node over the last batches`,
    );

    // Restart: stop gracefully, start again on the same data, time until a request about an old node is answered.
    await client.close();
    await child.close();
    const t0 = performance.now();
    child = await forkContainer(data);
    client = await connect(child.url, { identity: operator, connections: 4 });
    await client.describe(first!.id); // by ID: the old handle names the old port
    const restartMs = performance.now() - t0;
    row(`restart with ${nodesK}k nodes → first reply (process start included)`, 'ms', [restartMs], { kind: 'max', value: 2000, note: '(1M nodes)' });
    notes.push(`restart: Container.start itself took ${fmt(child.startMs)} ms`);
  } finally {
    await client.close().catch(() => {});
    await child.close();
  }
}

// --- machine calibration --------------------------------------------------------------------------

/**
 * The machine's speed now, against the figures SPEC §8 quotes for it (~35k Ed25519 key pairs/s, ~15k
 * verifies/s): on a shared, noisy host the same code measures very differently from one hour to the next.
 */
function calibrate(): string {
  const rate = (f: () => void, ms = 300): number => {
    for (let i = 0; i < 50; i++) f();
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      f();
      n++;
    }
    return n / ((performance.now() - t0) / 1000);
  };
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const msg = new Uint8Array(200);
  const sig = sign(null, msg, privateKey);
  const keys = rate(() => generateKeyPairSync('ed25519'));
  const verifies = rate(() => verify(null, msg, publicKey, sig));
  return `calibration: Ed25519 ${fmt(keys)} key pairs/s (SPEC: ~35k), ${fmt(verifies)} verifies/s (SPEC: ~15k) → machine at ~${fmt((100 * verifies) / 15_000)}% of the SPEC's speed`;
}

// --- main ------------------------------------------------------------------------------------------

async function cleanup(): Promise<void> {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
  if (root) await rm(root, { recursive: true, force: true }).catch(() => {});
}

async function main(): Promise<void> {
  const began = performance.now();
  root = await mkdtemp(join(tmpdir(), 'keynode-bench-'));
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  const cpu = cpus();
  const loadBefore = loadavg()[0]!;
  const calibration = calibrate();
  log(calibration);
  log(`keynode bench${QUICK ? ' (BENCH_QUICK=1)' : ''}: ${RUNS} runs per metric; progress on stderr, report on stdout`);
  try {
    const sections: [string, () => Promise<void>][] = [['spawn', benchSpawn], ['eval', benchEval], ['wake', benchWakes], ['memory', benchMemory]];
    for (const [name, f] of sections) {
      if (!ONLY.has(name)) continue;
      const t0 = performance.now();
      await f();
      log(`  (${name}: ${fmt((performance.now() - t0) / 1000)} s)`);
    }
  } finally {
    await cleanup();
  }
  const out = [
    '',
    `keynode benchmark${QUICK ? ' (quick)' : ''}`,
    `node ${process.version} · ${cpu.length} CPUs (${cpu[0]?.model.trim() ?? 'unknown'}) · ${fmt(totalmem() / 1024 ** 3)} GB RAM · ${process.platform}/${process.arch}`,
    `${calibration}; load average ${loadBefore.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`,
    `median of the runs shown; spawn/eval/wake run client and container in one process; total ${fmt((performance.now() - began) / 1000)} s`,
    '',
    renderTable(rows),
    ...(notes.length ? ['', ...notes.map((n) => `note: ${n}`)] : []),
    '',
  ];
  process.stdout.write(out.join('\n'));
}

await main();
