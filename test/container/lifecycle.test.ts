import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { connect, Lifetime, type KeynodeError } from 'keynode';
import { alive, startContainer, until } from '../helpers/containers.js';

describe('node lifecycle', () => {
  it('spawn starts no process; at() wakes the node; describe shows it awake with a pid; idle nodes go to sleep', async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 300 });
    const wakes: string[] = [];
    container.on('wake', (id) => wakes.push(id));
    const node = await client.spawn({ lifetime: Lifetime.root() });
    expect(node.id).toMatch(/^[a-z2-7]{52}$/);
    expect(node.url).toBe(`${container.url}/${node.id}`);
    const before = await client.describe(node);
    expect(before.status).toBe('asleep');
    expect(before.pid).toBeUndefined();
    expect(wakes).toEqual([]);

    const slept = once(container, 'sleep');
    const result = await client.at(node, async (ctx, a: number, b: number) => ({ sum: a + b, me: ctx.here.id }), 2, 3);
    expect(result).toEqual({ sum: 5, me: node.id });
    expect(wakes).toEqual([node.id]);
    const awake = await client.describe(node);
    expect(['idle', 'active']).toContain(awake.status);
    expect(awake.pid).toBeGreaterThan(0);
    expect(alive(awake.pid!)).toBe(true);

    const [id, why] = await slept;
    expect([id, why]).toEqual([node.id, 'idle']);
    const after = await client.describe(node);
    expect(after.status).toBe('asleep');
    expect(after.pid).toBeUndefined();
    // The node is asleep; its scrubbed worker waits as a spare for the next node of the same tenant.
    expect(alive(awake.pid!)).toBe(true);
    expect(container.fleet.spares).toBe(1);
  });

  it('with workerReuse off, a node that sleeps ends its process', async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 300, workerReuse: 'off' });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    const slept = once(container, 'sleep');
    await client.at(node, () => 1);
    const { pid } = await client.describe(node);
    await slept;
    await until(() => !alive(pid!), 5000, 'the worker to exit');
    expect(container.fleet.spares).toBe(0);
  });

  it('50 concurrent evals on an asleep node wake it once and run one at a time in arrival order', async () => {
    const { container, url, operator } = await startContainer();
    // One socket with pipelining: the container receives the 50 requests in exactly the order they were sent.
    const client = await connect(url, { identity: operator, connections: 1, pipelining: 50 });
    try {
      const node = await client.spawn({ lifetime: Lifetime.root() });
      let wakes = 0;
      container.on('wake', () => wakes++);
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          client.at(
            node,
            async (ctx, i: number) => {
              const log = ctx.ref<number[]>('order');
              const seen = (await log.get()) ?? [];
              // Several awaits between read and write: interleaving evals would lose entries.
              await ctx.ref('scratch').get();
              await ctx.ref('scratch').get();
              await log.set([...seen, i]);
              return { i, pid: ctx.here.id };
            },
            i,
          ),
        ),
      );
      expect(results.map((r) => r.i)).toEqual([...Array(50).keys()]);
      expect(wakes).toBe(1);
      const order = await client.at(node, (ctx) => ctx.ref<number[]>('order').get());
      expect(order).toEqual([...Array(50).keys()]);
    } finally {
      await client.close();
    }
  });

  it('kill -9 of the worker fails the eval in flight with a code; the next eval wakes a new process', async () => {
    const { container, client } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.root(), sandbox: { timeoutMs: 20_000 } });
    await client.at(node, (ctx) => ctx.ref('x').set(1));
    const { pid } = await client.describe(node);
    const woke = once(container, 'wake');
    // An eval that is certainly running when the kill lands: it says so in its log, then waits forever. (Killed
    // before its frame reached the worker, the eval would rightly be given to the next process instead of failing.)
    const inflight = client.at(node, (ctx) => {
      ctx.log('running');
      return new Promise(() => {});
    });
    expect((await client.logs(node, { wait: 10_000 })).map((l) => l.line)).toContain('running');
    process.kill(pid!, 'SIGKILL');
    const err = (await inflight.catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_WORKER_CRASHED');
    const value = await client.at(node, (ctx) => ctx.ref('x').get());
    expect(value).toBe(1);
    await woke;
    const again = await client.describe(node);
    expect(again.pid).not.toBe(pid);
  });

  it('an infinite loop fails with ERR_EVAL_TIMEOUT and the node answers afterwards', async () => {
    const { client } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.root(), sandbox: { timeoutMs: 300 } });
    const sync = (await client.at(node, () => { for (;;); }).catch((e: unknown) => e)) as KeynodeError;
    expect(sync.code).toBe('ERR_EVAL_TIMEOUT');
    // An async loop starves every timer inside the worker; only the container's clock can end it.
    const asyncLoop = (await client.at(node, async () => { for (;;) await null; }).catch((e: unknown) => e)) as KeynodeError;
    expect(asyncLoop.code).toBe('ERR_EVAL_TIMEOUT');
    expect(await client.at(node, () => 'still here')).toBe('still here');
  });

  it('a memory bomb kills only its own worker', async () => {
    const { client } = await startContainer({ rssOverheadMB: 64 });
    const bomb = await client.spawn({ lifetime: Lifetime.root(), sandbox: { memoryMB: 32, timeoutMs: 20_000 } });
    const bystander = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(bystander, (ctx) => ctx.ref('v').set('safe'));
    const { pid: bystanderPid } = await client.describe(bystander);

    const heap = (await client.at(bomb, () => {
      const hoard: string[][] = [];
      for (;;) hoard.push(new Array(1e6).fill('x'));
    }).catch((e: unknown) => e)) as KeynodeError;
    expect(heap.code).toBe('ERR_OUT_OF_MEMORY');

    // Off the V8 heap: --max-old-space-size does not see ArrayBuffers, the container's RSS watch does.
    const offHeap = (await client.at(bomb, () => {
      const hoard: Uint8Array[] = [];
      for (;;) hoard.push(new Uint8Array(16 * 1024 * 1024).fill(1));
    }).catch((e: unknown) => e)) as KeynodeError;
    expect(offHeap.code).toBe('ERR_OUT_OF_MEMORY');

    expect(await client.at(bystander, (ctx) => ctx.ref('v').get())).toBe('safe');
    expect((await client.describe(bystander)).pid).toBe(bystanderPid);
    expect(await client.at(bomb, () => 'recovered')).toBe('recovered');
  });
});

