/**
 * The blank pool breathes: its target follows the rate of wakes that found no reusable worker. Pure parts
 * first (the rate and the target), then a real container under a burst of wakes that cannot reuse anything.
 */
import { describe, expect, it } from 'vitest';
import { Lifetime } from 'keynode';
import { DecayingRate } from '../../dist/container/fleet/rate.js';
import { poolTarget } from '../../dist/container/fleet/pool.js';
import { startContainer, until } from '../helpers/containers.js';

describe('the blank pool follows the miss rate', () => {
  it('a steady stream of misses settles at its rate, and the rate decays once it stops', () => {
    const rate = new DecayingRate(5000);
    let t = 0;
    for (let i = 0; i < 200; i++) rate.hit((t += 100)); // 10 misses a second for 20 s
    expect(rate.value(t)).toBeGreaterThan(9);
    expect(rate.value(t)).toBeLessThan(11);
    expect(rate.value(t + 5000)).toBeCloseTo(rate.value(t) / Math.E, 5);
    expect(rate.value(t + 30_000)).toBeLessThan(0.05);
  });

  it('the target covers about a second of misses, between the floor and the ceiling', () => {
    expect(poolTarget(0, 2, 8)).toBe(2);
    expect(poolTarget(0.01, 0, 8)).toBe(0);
    expect(poolTarget(3.2, 0, 8)).toBe(4);
    expect(poolTarget(3.2, 5, 8)).toBe(5);
    expect(poolTarget(50, 0, 8)).toBe(8);
  });

  it('a burst of wakes that cannot reuse a worker grows the pool above its floor, never past its ceiling', async () => {
    const { container, client } = await startContainer({ poolMin: 0, poolMax: 3 });
    const nodes = await client.spawnMany(12, { lifetime: Lifetime.root(), sandbox: { isolation: 'process' } });
    let most = 0;
    const sample = setInterval(() => (most = Math.max(most, container.fleet.blanks)), 5);
    try {
      await Promise.all(nodes.map((n) => client.at(n, () => 1)));
      expect(container.fleet.poolTarget).toBeGreaterThan(0);
      await until(() => container.fleet.blanks > 0, 15_000, 'the pool to refill after the burst');
    } finally {
      clearInterval(sample);
    }
    expect(most).toBeLessThanOrEqual(3);
    const { counts } = container.fleet;
    expect(counts.blank + counts.new).toBe(12);
    expect(counts.spare + counts.steal).toBe(0);
  });
});
