import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { connect, Lifetime, type KeynodeError } from 'keynode';
import type { Container } from 'keynode/container';
import { startContainer, tempDir } from '../helpers/containers.js';
import { join } from 'node:path';

/** Resolves with the reason when `id` is destroyed. */
function destroyed(container: Container, id: string): Promise<string> {
  return new Promise((resolve) => {
    const on = (gone: string, reason: string) => {
      if (gone !== id) return;
      container.off('destroy', on);
      resolve(reason);
    };
    container.on('destroy', on);
  });
}

function eventFor<T extends unknown[]>(container: Container, event: 'reset' | 'lease' | 'sleep', id: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (...args: unknown[]) => {
      if (args[0] !== id) return;
      container.off(event, on);
      resolve(args as T);
    };
    container.on(event, on);
  });
}

const gone = async (p: Promise<unknown>) => ((await p.catch((e: unknown) => e)) as KeynodeError).code;

describe('Root', () => {
  it('lives until destroyed explicitly, across sleep', async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 50 });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    const slept = eventFor(container, 'sleep', node.id);
    await client.at(node, (ctx) => ctx.ref('v').set('kept'));
    await slept;
    expect(await client.at(node, (ctx) => ctx.ref('v').get())).toBe('kept');
    const reason = destroyed(container, node.id);
    await client.destroy(node);
    expect(await reason).toMatch(/destroyed by/);
  });
});

describe('Linked', () => {
  it('cascades three levels deep when the top is destroyed, and only to Linked children', async () => {
    const { container, client } = await startContainer();
    const top = await client.spawn({ lifetime: Lifetime.root(), budget: { maxNodes: 10 }, sandbox: { spawn: { lifetimes: ['linked', 'root'] } } });
    const [mid, bottom, survivor] = await client.at(top, async (ctx) => {
      const mid = await ctx.spawn({ lifetime: ctx.Lifetime.linked(), budget: { maxNodes: 3 }, sandbox: { spawn: { lifetimes: ['linked'] } } });
      const bottom = await ctx.at(mid, (c2) => c2.spawn({ lifetime: c2.Lifetime.linked() }));
      const survivor = await ctx.spawn({ lifetime: ctx.Lifetime.root() });
      return [mid, bottom, survivor];
    });
    const order: string[] = [];
    container.on('destroy', (id) => order.push(id));
    await client.destroy(top);
    // Children end before their parent: bottom, then mid, then top.
    expect(order).toEqual([bottom.id, mid.id, top.id]);
    for (const n of [top, mid, bottom]) expect(await gone(client.describe(n.id))).toBe('ERR_NODE_DESTROYED');
    // A Root child outlives its parent (the operator can still see it).
    expect((await client.describe(survivor.id)).status).toBe('asleep');
  });
});

describe('Resetting', () => {
  it('empties refs and indexes after its period without an eval; the node lives on', async () => {
    const { container, client } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.resetting(0.3) });
    const reset = eventFor(container, 'reset', node.id);
    // The node's last activity is after this moment (the eval had not been sent yet) and before the reply:
    // measuring from here bounds the period from below without counting the reply's trip.
    const sent = Date.now();
    await client.at(node, async (ctx) => {
      await ctx.ref('a').set(1);
      await ctx.index('i').put('k', 'v');
    });
    await reset;
    expect(Date.now() - sent).toBeGreaterThanOrEqual(300);
    expect(await client.at(node, async (ctx) => [await ctx.ref('a').get(), await ctx.index('i').entries()])).toEqual([null, []]);
    expect(await client.at(node, () => 'alive')).toBe('alive');
  });

  it('keeps its state while evals keep coming', async () => {
    const { container, client } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.resetting(0.4) });
    let resets = 0;
    container.on('reset', (id) => id === node.id && resets++);
    await client.at(node, (ctx) => ctx.ref('a').set(1));
    const until = Date.now() + 1000;
    // Activity well inside the period, for more than two periods: no reset may happen.
    while (Date.now() < until) await client.at(node, (ctx) => ctx.ref('a').get());
    expect(resets).toBe(0);
    expect(await client.at(node, (ctx) => ctx.ref('a').get())).toBe(1);
  });

  it('a container restart in the middle of the period still resets on time', async () => {
    const data = await tempDir();
    const first = await startContainer({ data });
    // The period counts from the spawn, so measure from just before it (not from the write, which a loaded
    // machine can delay by tens of milliseconds).
    const spawned = Date.now();
    const node = await first.client.spawn({ lifetime: Lifetime.resetting(1) });
    await first.client.at(node, (ctx) => ctx.ref('a').set(1));
    await first.client.close();
    await first.container.close();

    const second = await startContainer({ data });
    const reset = eventFor(second.container, 'reset', node.id);
    await reset;
    const at = Date.now() - spawned;
    expect(at).toBeGreaterThanOrEqual(990);
    expect(at).toBeLessThan(10_000);
    expect(await second.client.at(node.id, (ctx) => ctx.ref('a').get())).toBeNull();
  });
});

describe('Leased', () => {
  it('renews while its check is true and is destroyed when it turns false', async () => {
    const { container, client } = await startContainer();
    const owner = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(owner, (ctx) => ctx.ref('active').set(true));
    const leased = await client.spawn({ lifetime: Lifetime.leased(0.1, { node: owner, fn: async (ctx) => (await ctx.ref('active').get()) === true }) });
    const renewed = eventFor(container, 'lease', leased.id);
    expect((await renewed)[1]).toBe('renewed');
    expect(await client.at(leased, () => 'still here')).toBe('still here');
    const end = destroyed(container, leased.id);
    await client.at(owner, (ctx) => ctx.ref('active').set(false));
    expect(await end).toMatch(/check returned false/);
    expect(await gone(client.at(leased, () => 1))).toBe('ERR_NODE_DESTROYED');
  });

  it("is destroyed when its check's node is gone", async () => {
    const { container, client } = await startContainer();
    const owner = await client.spawn({ lifetime: Lifetime.root() });
    const leased = await client.spawn({ lifetime: Lifetime.leased(0.1, { node: owner, fn: () => true }) });
    await eventFor(container, 'lease', leased.id);
    const end = destroyed(container, leased.id);
    await client.destroy(owner);
    expect(await end).toMatch(/node is gone/);
  });

  it('retries a failing check with backoff and is destroyed after N failures in a row', async () => {
    const { container, client } = await startContainer({ leaseFailures: 3 });
    const owner = await client.spawn({ lifetime: Lifetime.root(), sandbox: { timeoutMs: 200 } });
    const leased = await client.spawn({ lifetime: Lifetime.leased(0.2, { node: owner, fn: () => { throw new Error('flaky'); } }) });
    const verdicts: string[] = [];
    container.on('lease', (id, v) => id === leased.id && verdicts.push(v));
    expect(await destroyed(container, leased.id)).toMatch(/failed 3 times/);
    expect(verdicts).toEqual(['failed', 'failed', 'failed']);
  });

  it('a container restart in the middle of a lease still checks on time', async () => {
    const data = await tempDir();
    const first = await startContainer({ data });
    const owner = await first.client.spawn({ lifetime: Lifetime.root() });
    // The lease period counts from the spawn: measure from just before it, not from its (loaded) reply.
    const spawned = Date.now();
    const leased = await first.client.spawn({ lifetime: Lifetime.leased(1, { node: owner, fn: () => false }) });
    await first.client.close();
    await first.container.close();
    const second = await startContainer({ data });
    expect(await destroyed(second.container, leased.id)).toMatch(/check returned false/);
    expect(Date.now() - spawned).toBeGreaterThanOrEqual(990);
  });
});

describe('Ephemeral', () => {
  it("is destroyed when its parent node goes to sleep without the child's ID in its state", async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 100 });
    const parent = await client.spawn({ lifetime: Lifetime.root(), budget: { maxNodes: 4 }, sandbox: { spawn: { lifetimes: ['ephemeral'] } } });
    const [kept, inIndex, dropped] = await client.at(parent, async (ctx) => {
      const a = await ctx.spawn({ lifetime: ctx.Lifetime.ephemeral() });
      const b = await ctx.spawn({ lifetime: ctx.Lifetime.ephemeral() });
      const c = await ctx.spawn({ lifetime: ctx.Lifetime.ephemeral() });
      await ctx.ref('child').set(a); // a node reference
      await ctx.index('children').put('b', b.id); // an ID in an index value
      return [a, b, c];
    });
    const end = destroyed(container, dropped.id);
    expect(await end).toMatch(/no longer holds/);
    for (const n of [kept, inIndex]) expect((await client.describe(n.id)).status).toBe('asleep');
    // Dropping it from state and sleeping again ends it.
    const end2 = destroyed(container, kept.id);
    await client.at(parent, (ctx) => ctx.ref('child').set(null));
    await end2;
    expect((await client.describe(inIndex.id)).status).toBe('asleep');
  });

  it('is destroyed when its parent node crashes', async () => {
    const { container, client } = await startContainer();
    const parent = await client.spawn({ lifetime: Lifetime.root(), budget: { maxNodes: 2 }, sandbox: { spawn: { lifetimes: ['ephemeral'] }, timeoutMs: 200 } });
    const child = await client.at(parent, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.ephemeral() }));
    const end = destroyed(container, child.id);
    expect(await gone(client.at(parent, () => { for (;;); }))).toBe('ERR_EVAL_TIMEOUT');
    await end;
  });

  it('is destroyed when its client stops renewing (process gone) after the grace period', async () => {
    // A grace long enough that renewals (every quarter of it) arrive on a loaded machine too.
    const { container, url, operator } = await startContainer({ holdGraceMs: 1000 });
    const owner = await connect(url, { identity: operator });
    const node = await owner.spawn({ lifetime: Lifetime.ephemeral() });
    const end = destroyed(container, node.id);
    // While the client lives it renews: the node outlives several grace periods.
    const alive = Date.now() + 3000;
    while (Date.now() < alive) await owner.at(node, () => 1);
    expect((await owner.describe(node)).id).toBe(node.id);
    await owner.close(); // no more renewals: the hold lapses
    expect(await end).toMatch(/no longer holds/);
  });

  it('is destroyed when the client garbage-collects its handle', async () => {
    const { url, data } = await startContainer();
    const fixture = fileURLToPath(new URL('../fixtures/ephemeral-gc.mjs', import.meta.url));
    const run = await execa(process.execPath, ['--expose-gc', fixture, url, join(data, 'operator.key')], { reject: false, timeout: 30_000 });
    const lines = run.stdout.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toHaveProperty('spawned');
    expect(lines[1]).toEqual({ gone: 'ERR_NODE_DESTROYED' });
    expect(run.exitCode).toBe(0);
  });

  it('does not survive a container restart (its key lived only in memory)', async () => {
    const data = await tempDir();
    const first = await startContainer({ data });
    const node = await first.client.spawn({ lifetime: Lifetime.ephemeral() });
    await first.client.close();
    await first.container.close();
    const second = await startContainer({ data });
    expect(await gone(second.client.at(node.id, () => 1))).toBe('ERR_NODE_DESTROYED');
  });

  it('never writes its private key to the store', async () => {
    const { container, client } = await startContainer();
    const eph = await client.spawn({ lifetime: Lifetime.ephemeral() });
    const root = await client.spawn({ lifetime: Lifetime.root() });
    const store = container.runtime.store;
    expect((await store.getNode(eph.id))?.sealedKey).toBeUndefined();
    expect((await store.getNode(root.id))?.sealedKey).toBeInstanceOf(Uint8Array);
    const seed = Buffer.from(eph.exportSecretKey()!);
    for await (const [, value] of store.sub('n').iterator()) expect(Buffer.from(value).includes(seed)).toBe(false);
  });
});
