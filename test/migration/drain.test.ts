/**
 * Draining a container under load: every node (and its subtree) ends up on the other two with its state,
 * writes made during the drain are all there once, the drained container refuses spawns and can then be
 * stopped, and each moved node still answers at a fleet URL.
 */
import { describe, expect, it } from 'vitest';
import { connect, KeynodeError, Lifetime } from 'keynode';
import { defer, type TestContainer } from '../helpers/containers.js';
import { startFleet } from '../helpers/fleet-local.js';

const BUMP = async (ctx: any, i: number) => {
  const r = ctx.ref('bumps');
  const seen: number[] = (await r.get()) ?? [];
  await r.set([...seen, i]);
};

describe('drain', { timeout: 180_000 }, () => {
  it('moves every node of one container to its peers under load; it can then stop, and fleet URLs still work', async () => {
    const [a, b, c] = (await startFleet(3)) as [TestContainer, TestContainer, TestContainer];
    const sandbox = { refs: 'readwrite', timeoutMs: 20_000 } as const;
    const parents = await c.client.spawnMany(12, { lifetime: Lifetime.root(), sandbox: { ...sandbox, spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 1 } });
    const loose = await c.client.spawnMany(20, { lifetime: Lifetime.root(), sandbox });
    // Held by this client: it ends with C's boot as its lifetime says, so the drain leaves it and says so.
    const held = await c.client.spawn({ lifetime: Lifetime.ephemeral() });
    const kids: string[] = [];
    // A few at a time: each wakes two processes on a loaded machine.
    for (const [i, p] of parents.entries()) {
      kids.push(await c.client.at(p, async (ctx, i: number) => {
        const kid = await ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { refs: 'readwrite', timeoutMs: 20_000 } });
        await ctx.at(kid, async (k: any, i: number) => k.ref('v').set(`kid ${i}`), i);
        await ctx.ref('v').set(`parent ${i}`);
        return kid.id as string;
      }, i));
    }
    for (const [i, n] of loose.entries()) await c.client.at(n, async (ctx, i: number) => ctx.ref('v').set(`loose ${i}`), i);

    // Load: a writer per loose node keeps bumping it through the drain, by its old URL.
    let draining = true;
    const acked = new Map<string, number[]>();
    const load = loose.slice(0, 8).map(async (n) => {
      const mine: number[] = [];
      acked.set(n.id, mine);
      for (let i = 0; draining || i < 3; i++) {
        await c.client.at(n, BUMP, i);
        mine.push(i);
      }
    });
    const report = await c.client.drain({ concurrency: 4 });
    draining = false;
    await Promise.all(load);

    expect(report.failed).toEqual([]);
    expect(report.ephemeral).toBe(1);
    expect(report.moved).toBe(32);
    expect(report.nodes).toBe(44);
    expect(report.peers[a.url]! + report.peers[b.url]!).toBe(44);
    expect(report.peers[a.url]).toBeGreaterThan(0);
    expect(report.peers[b.url]).toBeGreaterThan(0);
    expect(((await c.client.request('list', {})) as { nodes: { id: string }[] }).nodes.map((n) => n.id)).toEqual([held.id]);
    const refused = await c.client.spawn({ lifetime: Lifetime.root() }).catch((e: KeynodeError) => e);
    expect((refused as KeynodeError).code).toBe('ERR_UNAVAILABLE');
    // Not ready (a Kubernetes Service stops sending it clients), still alive.
    expect((await fetch(`${c.url}/readyz`)).status).toBe(503);
    expect((await fetch(`${c.url}/livez`)).status).toBe(200);
    expect((await fetch(`${a.url}/readyz`)).status).toBe(200);

    // Every write acknowledged during the drain is there, once and in order.
    for (const [id, mine] of acked) expect(await c.client.at(id, async (ctx) => ctx.ref('bumps').get())).toEqual(mine);
    await c.container.close();

    // C is gone: each node answers its owner (C's operator identity) at a fleet URL through A or B.
    const viaA = await connect(a.url, { identity: c.operator });
    const viaB = await connect(b.url, { identity: c.operator });
    defer(() => viaA.close());
    defer(() => viaB.close());
    for (const [i, n] of loose.entries()) expect(await viaA.at(`${a.url}/${n.id}`, async (ctx) => ctx.ref('v').get())).toBe(`loose ${i}`);
    for (const [i, p] of parents.entries()) {
      expect(await viaB.at(`${b.url}/${p.id}`, async (ctx) => ctx.ref('v').get())).toBe(`parent ${i}`);
      expect(await viaA.at(`${a.url}/${kids[i]}`, async (ctx) => ctx.ref('v').get())).toBe(`kid ${i}`);
    }
  });
});
