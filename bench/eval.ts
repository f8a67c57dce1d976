/**
 * @module bench/eval
 * Warm evals: latency on one awake node, throughput across many, and the proportional memory (PSS) of the
 * awake workers.
 */
import { readFile } from 'node:fs/promises';
import { Lifetime } from '../index.js';
import { log, notes, QUICK, row, RUNS, start, wakeAll } from './harness.js';
import { fmt, median, percentile } from './stats.js';

const SIZE = {
  evalSequential: QUICK ? 300 : 1000,
  evalWarmup: QUICK ? 100 : 300,
  throughputNodes: QUICK ? 50 : 100,
  throughputMs: QUICK ? 800 : 2000,
};

export async function benchEval(): Promise<void> {
  log('warm eval');
  const { c, client, close } = await start('eval', { poolMin: 4 }, { connections: SIZE.throughputNodes });
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
