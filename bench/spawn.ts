/**
 * @module bench/spawn
 * Spawn rate: single signed spawns with many in flight, and spawnMany batches.
 */
import { Lifetime } from '../index.js';
import { log, QUICK, row, RUNS, start } from './harness.js';
import { pooled } from './stats.js';

const SIZE = {
  spawnSingle: QUICK ? 300 : 600,
  spawnConcurrency: 32,
  spawnBatches: QUICK ? 2 : 3,
  batch: 1000,
};

export async function benchSpawn(): Promise<void> {
  log('spawn');
  const { client, close } = await start('spawn', { poolMin: 0 }, { connections: SIZE.spawnConcurrency });
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
