/**
 * @module bench/eval
 * Warm evals: latency on one awake node, throughput across many, and the proportional memory (PSS) of the
 * awake workers.
 */
import { readFile } from 'node:fs/promises';
import { Lifetime, type Client } from '../index.js';
import { log, notes, QUICK, row, RUNS, startForked, wakeAll } from './harness.js';
import { fmt, median, percentile, sleep, target } from './stats.js';

const SIZE = {
  evalSequential: QUICK ? 300 : 1000,
  // Until the three processes (client, container, worker) have optimized the eval path: with 300, the first two
  // runs of 1,000 were still 2-3.5× slower than the last (p50 and p99).
  evalWarmup: QUICK ? 300 : 3000,
  throughputNodes: QUICK ? 50 : 100,
  throughputMs: QUICK ? 800 : 2000,
};
/** Evals in flight in the throughput run: the target's figure. */
const IN_FLIGHT = 64;

/**
 * What a `ctx.at` adds to its caller's eval: in each run, evals that make one `ctx.at` (on this container, or on
 * another container in this process) alternate with plain evals on the same caller, and the difference of their
 * p50s is what the call added (alternating keeps a noisy machine's drift out of the difference).
 */
async function benchCtxAt(client: Client): Promise<void> {
  const { client: peer } = await startForked('eval-peer', { poolMin: 1 });
  const lifetime = Lifetime.root();
  const caller = await client.spawn({ lifetime, sandbox: { contacts: 'any' } });
  const local = await client.spawn({ lifetime, acl: [caller.url] });
  const remote = await peer.spawn({ lifetime, acl: [caller.url] });
  const nested = (target: string) => client.at(caller, (ctx, t: string) => ctx.at(t, () => 1), target);
  const plain = () => client.at(caller, () => 1);
  for (const [label, callee] of [['on the same container', local.url], ['on another container', remote.url]] as const) {
    for (let i = 0; i < SIZE.evalWarmup; i++) await nested(callee);
    const added: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const withAt: number[] = [];
      const without: number[] = [];
      for (let i = 0; i < SIZE.evalSequential / 2; i++) {
        let t0 = performance.now();
        await nested(callee);
        withAt.push(performance.now() - t0);
        t0 = performance.now();
        await plain();
        without.push(performance.now() - t0);
      }
      added.push(percentile(withAt, 50) - percentile(without, 50));
    }
    row(`ctx.at added to the caller's eval, p50, ${label}`, 'ms', added, target(label.includes('same') ? 'ctxAtLocal' : 'ctxAtRemote'));
  }
}

export async function benchEval(): Promise<void> {
  log('warm eval');
  const { client, stats, close } = await startForked('eval', { poolMin: 4 }, { connections: SIZE.throughputNodes });
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
    row('warm eval latency p50 (sequential, 1 node)', 'ms', p50, target('evalP50'));
    row('warm eval latency p99 (sequential, 1 node)', 'ms', p99, target('evalP99'));
    await benchCtxAt(client);

    const nodes = await client.spawnMany(SIZE.throughputNodes, { lifetime });
    const tw = performance.now();
    await wakeAll(client, nodes, 8);
    log(`  (woke ${nodes.length} nodes in ${fmt(performance.now() - tw)} ms)`);
    const throughput: number[] = [];
    const lanes = Math.min(IN_FLIGHT, nodes.length);
    const measure = async (ms: number): Promise<number> => {
      let done = 0;
      const t0 = performance.now();
      const end = t0 + ms;
      // The target's shape: IN_FLIGHT evals in flight across all the nodes. Lane i serves nodes i, i + IN_FLIGHT,
      // ... in turn, so no node ever has two (a node runs one eval at a time).
      await Promise.all(
        Array.from({ length: lanes }, async (_, lane) => {
          for (let k = lane; performance.now() < end; k += lanes) {
            await client.at(nodes[k % nodes.length]!, () => 1);
            done++;
          }
        }),
      );
      return done / ((performance.now() - t0) / 1000);
    };
    // Warm-up until every node holds a process: woken for one eval each, they were cold and handed their
    // workers to each other; under steady use they turn hot and the container starts processes until they fit.
    const warmUntil = performance.now() + 60_000;
    do await measure(Math.min(500, SIZE.throughputMs));
    while ((await stats()).awake! < nodes.length && performance.now() < warmUntil);
    log(`  (${(await stats()).awake} of ${nodes.length} nodes awake after the warm-up)`);
    // The pool refills after the warm-up's misses; measure once no process is starting any more.
    for (let i = 0; i < 600 && (await stats()).startingWorkers! > 0; i++) await sleep(50);
    await measure(SIZE.throughputMs); // the newest workers' code is still being compiled and tiered up
    for (let r = 0; r < RUNS; r++) throughput.push(await measure(SIZE.throughputMs));
    row(`warm eval throughput (${nodes.length} awake nodes, ${lanes} in flight)`, 'evals/s', throughput, target('evalThroughput', nodes.length === 100 && lanes === IN_FLIGHT ? 'same' : `measured on ${nodes.length} nodes with ${lanes} in flight (BENCH_QUICK); the target is for 100 with 64`));

    // Density: proportional memory (PSS: shared pages split among their sharers) of the awake workers, once
    // they have been idle a while (an idle node is what the target is about; right after a burst of evals
    // the young generation still holds its garbage).
    await sleep(10_000);
    const pss: number[] = [];
    const { nodes: listed } = (await client.request('list', { limit: 10_000 })) as { nodes: { pid?: number }[] };
    for (const pid of listed.map((n) => n.pid).filter((p): p is number => typeof p === 'number')) {
      const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
      const kb = /^Pss:\s+(\d+)/m.exec(text)?.[1];
      if (kb !== undefined) pss.push(Number(kb) / 1024);
    }
    if (pss.length) {
      row(`awake idle node proportional memory (PSS, median of ${pss.length} workers)`, 'MB', [median(pss)], target('density', `measured with ${pss.length} awake; the target is for 1,000 (BENCH_ONLY=awake measures that)`));
    } else notes.push('density: /proc/<pid>/smaps_rollup is not readable here; PSS not measured');
  } finally {
    await close();
  }
}
