/**
 * @module bench/spawn
 * Spawn rate, against a container in its own process, as it is deployed: in one process the client's
 * signing and HTTP would compete with the container for the same event loop and hide what the container
 * can do. Single signed spawns with many in flight, and spawnMany batches of 1,000 and 10,000; besides
 * nodes/s, the container's CPU per node (all of its threads), and how long an eval on an awake node waits
 * while a batch of 10,000 is being spawned (the event loop must stay free).
 */
import { Lifetime } from '../index.js';
import { log, notes, QUICK, row, RUNS, startForked } from './harness.js';
import { fmt, median, pooled, target } from './stats.js';

const SIZE = {
  spawnSingle: QUICK ? 300 : 600,
  spawnConcurrency: 32,
  batch: 1000,
  bigBatch: 10_000,
  /** Nodes per spawnMany run, whatever the batch size. */
  spawnManyNodes: QUICK ? 10_000 : 20_000,
};

export async function benchSpawn(): Promise<void> {
  log('spawn (container in its own process)');
  const { child, client, close } = await startForked('spawn', { poolMin: 1 }, { connections: SIZE.spawnConcurrency });
  try {
    const lifetime = Lifetime.root();
    // Throughput keeps rising over the first ~1,000 spawns (compilation, caches): warm up past that.
    await pooled(QUICK ? 500 : 1500, SIZE.spawnConcurrency, () => client.spawn({ lifetime }));
    const single: number[] = [];
    const singleCpu: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const cpu0 = await child.cpuMs();
      const t0 = performance.now();
      await pooled(SIZE.spawnSingle, SIZE.spawnConcurrency, () => client.spawn({ lifetime }));
      single.push(SIZE.spawnSingle / ((performance.now() - t0) / 1000));
      singleCpu.push((1000 * ((await child.cpuMs()) - cpu0)) / SIZE.spawnSingle);
    }
    row(`spawn, single calls (concurrency ${SIZE.spawnConcurrency})`, 'nodes/s', single, target('spawnSingle', SIZE.spawnConcurrency === 32 ? 'same' : `${SIZE.spawnConcurrency} in flight; the target is for 32`));
    row('  container CPU per single spawn', 'µs', singleCpu);

    for (const batch of [SIZE.batch, SIZE.bigBatch]) {
      await client.spawnMany(batch, { lifetime }); // warm-up
      const many: number[] = [];
      const cpu: number[] = [];
      const batches = Math.max(1, Math.round(SIZE.spawnManyNodes / batch));
      for (let r = 0; r < RUNS; r++) {
        const cpu0 = await child.cpuMs();
        const t0 = performance.now();
        for (let b = 0; b < batches; b++) await client.spawnMany(batch, { lifetime });
        many.push((batches * batch) / ((performance.now() - t0) / 1000));
        cpu.push((1000 * ((await child.cpuMs()) - cpu0)) / (batches * batch));
      }
      row(`spawn, spawnMany batches of ${fmt(batch)}`, 'nodes/s', many, target('spawnMany'));
      row(`  container CPU per node (batches of ${fmt(batch)})`, 'µs', cpu);
    }

    // Evals on an awake node while batches of 10,000 are spawned: sequential round trips, the longest one
    // against the same loop with nothing else running. The batches go as raw requests, so this process only
    // decodes their replies (it builds no handles) and its own work stays out of the measurement.
    const node = await client.spawn({ lifetime });
    await client.at(node, () => 1); // wake
    const evals = async (until: () => boolean): Promise<number[]> => {
      const ms: number[] = [];
      while (!until()) {
        const t0 = performance.now();
        await client.at(node, () => 1);
        ms.push(performance.now() - t0);
      }
      return ms;
    };
    const quietEnd = performance.now() + 500;
    const quiet = await evals(() => performance.now() > quietEnd);
    const during: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      let done = false;
      const spawning = client.request('spawn', { lifetime, count: SIZE.bigBatch }).finally(() => (done = true));
      const ms = await evals(() => done);
      await spawning;
      during.push(Math.max(...ms));
    }
    row(`eval latency max while spawnMany(${fmt(SIZE.bigBatch)}) runs`, 'ms', during);
    notes.push(`spawn: eval latency with nothing else running: p50 ${fmt(median(quiet))} ms, max ${fmt(Math.max(...quiet))} ms`);
  } finally {
    await close();
  }
}
