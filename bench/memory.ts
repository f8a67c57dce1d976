/**
 * @module bench/memory
 * Sleeping nodes cost memory only in the store: the container's resident memory as nodes are spawned, and
 * the time from a restart to the first reply. The container runs in its own process so its memory is its own.
 */
import { join } from 'node:path';
import { connect, Identity, Lifetime, type NodeHandle } from '../index.js';
import { dataDir, forkContainer, log, notes, QUICK, row } from './harness.js';
import { fmt, target } from './stats.js';

const SIZE = {
  memoryNodes: Number(process.env.BENCH_MEMORY_NODES ?? (QUICK ? 10_000 : 100_000)),
  memoryBatch: QUICK ? 5_000 : 10_000,
};

export async function benchMemory(): Promise<void> {
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
    row(`spawn, spawnMany batches of ${SIZE.memoryBatch} (container in own process)`, 'nodes/s', rates, target('spawnMany'));
    row(`container RSS, empty (after GC)`, 'MB', [base.rss / MB]);
    row(`container RSS with ${nodesK}k sleeping nodes (after GC)`, 'MB', [after.rss / MB], target('sleepersRss', `measured at ${nodesK}k nodes; the target is for 10M (the extrapolation below, or BENCH_ONLY=sleepers)`));
    const p0 = points[0]!;
    const pN = points[points.length - 1]!;
    const slope = pN.nodes > p0.nodes ? (pN.rss - p0.rss) / (pN.nodes - p0.nodes) : (pN.rss - base.rss) / pN.nodes;
    if (SIZE.memoryNodes >= 50_000) {
      row(`container RSS extrapolated to 10M sleeping nodes (linear, from the slope of the last batches)`, 'MB', [(after.rss + slope * (10_000_000 - SIZE.memoryNodes)) / MB], target('sleepersRss', 'extrapolated'));
    } else notes.push(`memory: no 10M extrapolation from ${nodesK}k nodes (the first ~20k nodes bring a one-off step of ~60 MB that a short run cannot separate from the per-node slope); run without BENCH_QUICK`);
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
    row(`restart with ${nodesK}k nodes → first reply (process start included)`, 'ms', [restartMs], target('restart', `measured with ${nodesK}k nodes; the target is for 10M (BENCH_ONLY=sleepers)`));
    notes.push(`restart: Container.start itself took ${fmt(child.startMs)} ms`);
  } finally {
    await client.close().catch(() => {});
    await child.close();
  }
}
