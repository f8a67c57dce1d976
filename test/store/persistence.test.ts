import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { connect, Lifetime, type KeynodeError } from 'keynode';
import { startContainer, startContainerProcess, tempDir } from '../helpers/containers.js';

const bump = async (ctx: import('keynode').Ctx, by: number) => {
  const r = ctx.ref<number>('count');
  const next = ((await r.get()) ?? 0) + by;
  await r.set(next);
  await ctx.index<string>('history').put(String(next).padStart(6, '0'), `+${by}`);
  return next;
};

describe('persistence', () => {
  it('refs and indexes survive sleep', async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 100 });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    const slept = once(container, 'sleep');
    expect(await client.at(node, bump, 2)).toBe(2);
    await slept;
    expect(await client.at(node, bump, 3)).toBe(5);
    expect(await client.at(node, (ctx) => ctx.index('history').entries())).toEqual([
      ['000002', '+2'],
      ['000005', '+3'],
    ]);
  });

  it('a throwing eval leaves no partial writes, and neither does a worker that dies mid-eval', async () => {
    const { client } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(node, bump, 1);
    const thrown = (await client
      .at(node, async (ctx) => {
        await ctx.ref('count').set(100);
        await ctx.index('history').put('999999', 'never');
        await ctx.ref('other').set('never');
        throw new RangeError('changed my mind');
      })
      .catch((e: unknown) => e)) as KeynodeError;
    expect(thrown.code).toBe('ERR_USER');
    expect(thrown.remote).toMatchObject({ name: 'RangeError', message: 'changed my mind' });
    const timedOut = (await client
      .at(node, async (ctx) => {
        await ctx.ref('count').set(200);
        for (;;);
      })
      .catch((e: unknown) => e)) as KeynodeError;
    expect(timedOut.code).toBe('ERR_EVAL_TIMEOUT');
    const state = await client.at(node, async (ctx) => [await ctx.ref('count').get(), await ctx.ref('other').get(), await ctx.index('history').entries()]);
    expect(state).toEqual([1, null, [['000001', '+1']]]); // undefined arrives as null (MessagePack nil)
  }, 30_000);

  it('a restarted container serves every node, asleep, with its state', async () => {
    const data = await tempDir();
    const first = await startContainer({ data });
    const nodes = await first.client.spawnMany(20, { lifetime: Lifetime.root() });
    for (const [i, n] of nodes.entries()) await first.client.at(n, bump, i + 1);
    await first.client.close();
    await first.container.close();

    const second = await startContainer({ data });
    expect(second.operator.id).toBe(first.operator.id);
    for (const [i, n] of nodes.entries()) {
      expect((await second.client.describe(n.id)).status).toBe('asleep');
      expect(await second.client.at(n.id, (ctx) => ctx.ref('count').get())).toBe(i + 1);
    }
  });

  it('every acknowledged write survives kill -9 of the container', async () => {
    const data = await tempDir();
    const proc = await startContainerProcess(data);
    const client = await connect(proc.url, { identity: proc.operator });
    const nodes = await client.spawnMany(4, { lifetime: Lifetime.root() });
    const acked = new Map<string, number>();
    // A write storm: each eval's result is the value it committed, so a result means "acknowledged".
    let stop = false;
    const storms = nodes.map(async (n) => {
      while (!stop) {
        try {
          acked.set(n.id, await client.at(n, bump, 1));
        } catch {
          return; // the container died under us
        }
      }
    });
    await new Promise<void>((resolve) => {
      const check = () => ([...acked.values()].reduce((a, b) => a + b, 0) >= 40 ? resolve() : setImmediate(check));
      check();
    });
    await proc.kill9();
    stop = true;
    await Promise.all(storms);
    await client.close();

    const again = await startContainerProcess(data);
    const after = await connect(again.url, { identity: again.operator });
    try {
      for (const n of nodes) {
        const count = (await after.at(n.id, (ctx) => ctx.ref<number>('count').get())) ?? 0;
        const history = await after.at(n.id, (ctx) => ctx.index('history').entries({ limit: 10_000 }));
        // Acknowledged: present. Not acknowledged: at most the one in flight, and never half of it.
        expect(count).toBeGreaterThanOrEqual(acked.get(n.id) ?? 0);
        expect(count).toBeLessThanOrEqual((acked.get(n.id) ?? 0) + 1);
        expect(history.length).toBe(count);
      }
    } finally {
      await after.close();
      await again.stop();
    }
  });
});
