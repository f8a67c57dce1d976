import { describe, expect, it } from 'vitest';
import { connect, Lifetime, type Client, type NodeHandle } from 'keynode';
import { alive, defer, startContainer, until } from '../helpers/containers.js';
import { allNodes, failure } from './util.js';
import type { Container } from 'keynode/container';

async function newClient(url: string): Promise<Client> {
  const c = await connect(url);
  defer(() => c.close());
  return c;
}

/** Records the container's wake and sleep events in order. */
function watch(container: Container) {
  const wakes: string[] = [];
  const sleeps: [string, string][] = [];
  container.on('wake', (id) => wakes.push(id));
  container.on('sleep', (id, why) => sleeps.push([id, why]));
  return { wakes, sleeps };
}

describe('budgets: grants and maxNodes', () => {
  it('a principal without a grant cannot spawn, and nothing is created', async () => {
    const { url, client: op } = await startContainer();
    const alice = await newClient(url);
    const before = (await allNodes(op)).length;
    const err = await failure(alice.spawn({ lifetime: Lifetime.root() }));
    expect(err.code).toBe('ERR_BUDGET_EXHAUSTED');
    const many = await failure(alice.spawnMany(3, { lifetime: Lifetime.root() }));
    expect(many.code).toBe('ERR_BUDGET_EXHAUSTED');
    expect((await allNodes(op)).length).toBe(before);
    // The operator itself spawns from the container's capacity, no grant needed.
    const own = await op.spawn({ lifetime: Lifetime.root() });
    expect((await op.describe(own)).parent).toBe(op.here.id);
  });

  it('the operator grants; the principal spawns up to maxNodes; the next spawn is refused and changes nothing; destroy returns the node', async () => {
    const { url, client: op } = await startContainer({ capacity: { maxNodes: 100, maxAwake: 10, memoryMB: 4096 } });
    const alice = await newClient(url);
    const granted = await op.grant(alice.here, { maxNodes: 3, maxAwake: 2, memoryMB: 256 });
    // storageMB, not named, defaults to the capacity's (10 GiB).
    expect(granted).toEqual({ principal: alice.here.id, limits: { maxNodes: 3, maxAwake: 2, memoryMB: 256, storageMB: 10240 }, used: { nodes: 0, awake: 0, memoryMB: 0, storageMB: 0, storageBytes: 0 } });
    // The grant is carved out of the operator's capacity.
    expect((await op.budget()).used.nodes).toBe(3);
    expect((await op.budget()).limits).toEqual({ maxNodes: 100, maxAwake: 10, memoryMB: 4096, storageMB: 10240 });

    const a = await alice.spawn({ lifetime: Lifetime.root() });
    const [b, c] = await alice.spawnMany(2, { lifetime: Lifetime.root() });
    expect((await alice.budget()).used.nodes).toBe(3);
    expect((await op.budget(alice.here)).used.nodes).toBe(3);
    for (const n of [a, b!, c!]) expect((await alice.describe(n)).parent).toBe(alice.here.id);

    const countBefore = (await allNodes(op)).length;
    const over = await failure(alice.spawn({ lifetime: Lifetime.root() }));
    expect(over.code).toBe('ERR_BUDGET_EXHAUSTED');
    expect((await alice.budget()).used.nodes).toBe(3);
    expect((await allNodes(op)).length).toBe(countBefore);

    await alice.destroy(b!);
    expect((await alice.budget()).used.nodes).toBe(2);
    // Two at once when only one is left: refused whole, nothing partially created.
    const batch = await failure(alice.spawnMany(2, { lifetime: Lifetime.root() }));
    expect(batch.code).toBe('ERR_BUDGET_EXHAUSTED');
    expect((await alice.budget()).used.nodes).toBe(2);
    expect((await allNodes(op)).length).toBe(countBefore - 1);

    const d = await alice.spawn({ lifetime: Lifetime.root() });
    expect((await alice.budget()).used.nodes).toBe(3);
    expect(await alice.at(d, () => 'alive')).toBe('alive');
    expect((await alice.budget()).used.awake).toBe(1);
    // Destroying an awake node returns its node and its awake slot.
    await alice.destroy(d);
    expect((await alice.budget()).used).toEqual({ nodes: 2, awake: 0, memoryMB: 0, storageMB: 0, storageBytes: 0 });
    await alice.spawn({ lifetime: Lifetime.root() });

    // A later grant replaces the earlier one; it cannot go below what is in use.
    const bigger = await op.grant(alice.here, { maxNodes: 5, maxAwake: 2, memoryMB: 256 });
    expect(bigger.limits.maxNodes).toBe(5);
    expect(bigger.used.nodes).toBe(3);
    expect((await op.budget()).used.nodes).toBe(5);
    const below = await failure(op.grant(alice.here, { maxNodes: 2, maxAwake: 2, memoryMB: 256 }));
    expect(below.code).toBe('ERR_BUDGET_EXHAUSTED');
    expect((await alice.budget()).limits.maxNodes).toBe(5);
    expect((await op.budget()).used.nodes).toBe(5);
  });

  it('concurrent spawns never take more than the grant: exactly maxNodes of them succeed', async () => {
    const { url, client: op } = await startContainer();
    const alice = await newClient(url);
    await op.grant(alice.here, { maxNodes: 5, maxAwake: 1, memoryMB: 128 });
    const results = await Promise.all(Array.from({ length: 12 }, () => alice.spawn({ lifetime: Lifetime.root() }).then(() => 'ok', (e: { code?: string }) => e.code)));
    expect(results.filter((r) => r === 'ok')).toHaveLength(5);
    expect(results.filter((r) => r !== 'ok')).toEqual(Array(7).fill('ERR_BUDGET_EXHAUSTED'));
    expect((await alice.budget()).used.nodes).toBe(5);
    expect((await allNodes(op)).filter((n) => n.parent === alice.here.id)).toHaveLength(5);
  });

  it('grants beyond the capacity are refused', async () => {
    const { url, client: op } = await startContainer({ capacity: { maxNodes: 10, maxAwake: 4, memoryMB: 512 } });
    const alice = await newClient(url);
    for (const budget of [{ maxNodes: 11, maxAwake: 1, memoryMB: 64 }, { maxNodes: 1, maxAwake: 5, memoryMB: 64 }, { maxNodes: 1, maxAwake: 1, memoryMB: 513 }]) {
      const err = await failure(op.grant(alice.here, budget));
      expect(err.code).toBe('ERR_BUDGET_EXHAUSTED');
    }
    expect((await op.budget()).used.nodes).toBe(0);
    expect((await failure(alice.spawn({ lifetime: Lifetime.root() }))).code).toBe('ERR_BUDGET_EXHAUSTED');
  });

  it('only the operator may grant, and only the operator may read another principal\'s budget', async () => {
    const { url, client: op } = await startContainer();
    const alice = await newClient(url);
    const bob = await newClient(url);
    await op.grant(alice.here, { maxNodes: 4, maxAwake: 1, memoryMB: 128 });

    const err = await failure(alice.grant(bob.here, { maxNodes: 1, maxAwake: 1, memoryMB: 64 }));
    expect(err.code).toBe('ERR_ACCESS_DENIED');
    const self = await failure(alice.grant(alice.here, { maxNodes: 100, maxAwake: 1, memoryMB: 64 }));
    expect(self.code).toBe('ERR_ACCESS_DENIED');
    expect((await alice.budget()).limits).toEqual({ maxNodes: 4, maxAwake: 1, memoryMB: 128, storageMB: 10240 });
    expect((await failure(bob.spawn({ lifetime: Lifetime.root() }))).code).toBe('ERR_BUDGET_EXHAUSTED');

    expect((await failure(bob.budget(alice.here))).code).toBe('ERR_ACCESS_DENIED');
    expect((await failure(alice.budget(op.here))).code).toBe('ERR_ACCESS_DENIED');
    expect((await op.budget(alice.here)).principal).toBe(alice.here.id);
  });
});

describe('budgets: carving children from a node', () => {
  it('a node with maxNodes 3 spawns a child with maxNodes 1 (uses 2), the third level fails when exhausted, and destroy returns the share', async () => {
    const { container, client: op } = await startContainer({ capacity: { maxNodes: 1000, maxAwake: 10, memoryMB: 4096 } });
    const destroyed: string[] = [];
    container.on('destroy', (id) => destroyed.push(id));
    const spawnLinked = { spawn: { lifetimes: ['linked' as const] } };
    const n = await op.spawn({ lifetime: Lifetime.root(), sandbox: spawnLinked, budget: { maxNodes: 3 } });
    // Unset budget fields come from the spawner: maxAwake, memoryMB and storageMB the operator's capacity.
    expect(await op.budget(n)).toEqual({ principal: n.id, limits: { maxNodes: 3, maxAwake: 10, memoryMB: 4096, storageMB: 10240 }, used: { nodes: 0, awake: 0, memoryMB: 0, storageMB: 0, storageBytes: 0 } });
    expect((await op.budget()).used.nodes).toBe(4);

    const c = await op.at(n, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 1 } }));
    expect((await op.budget(n)).used.nodes).toBe(2);
    expect((await op.budget(c)).limits).toEqual({ maxNodes: 1, maxAwake: 10, memoryMB: 4096, storageMB: 10240 });
    expect((await op.describe(c)).parent).toBe(n.id);

    // Third level: the grandchild's own default budget is maxNodes 0, so it cannot spawn at all.
    const g = await op.at(c, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { spawn: { lifetimes: ['linked'] } } }));
    expect((await op.budget(c)).used.nodes).toBe(1);
    expect((await op.budget(g)).limits.maxNodes).toBe(0);
    const gFull = await failure(op.at(g, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked() })));
    expect(gFull.code).toBe('ERR_BUDGET_EXHAUSTED');
    expect((await op.budget(g)).used.nodes).toBe(0);
    const cFull = await failure(op.at(c, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked() })));
    expect(cFull.code).toBe('ERR_BUDGET_EXHAUSTED');
    expect((await op.budget(c)).used.nodes).toBe(1);

    // The top node has one left: a plain child takes it; the next is refused.
    await op.at(n, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked() }));
    expect((await op.budget(n)).used.nodes).toBe(3);
    const count = (await allNodes(op)).length;
    const nFull = await failure(op.at(n, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked() })));
    expect(nFull.code).toBe('ERR_BUDGET_EXHAUSTED');
    expect((await op.budget(n)).used.nodes).toBe(3);
    expect((await allNodes(op)).length).toBe(count);

    // Destroying the child (and with it its Linked grandchild) returns both to the top node.
    await op.at(n, (ctx, child: string) => ctx.destroy(child), c.url);
    expect(destroyed).toContain(c.id);
    expect(destroyed).toContain(g.id);
    expect((await op.budget(n)).used.nodes).toBe(1);
    const again = await op.at(n, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), budget: { maxNodes: 1 } }));
    expect((await op.budget(n)).used.nodes).toBe(3);
    expect((await op.describe(again)).parent).toBe(n.id);
  });

  it('over-asking a child budget (maxAwake, memoryMB or maxNodes above the spawner\'s) is refused and changes nothing', async () => {
    const { url, client: op } = await startContainer({ capacity: { maxNodes: 1000, maxAwake: 10, memoryMB: 4096 } });
    const alice = await newClient(url);
    await op.grant(alice.here, { maxNodes: 6, maxAwake: 2, memoryMB: 256 });
    const parent = await alice.spawn({ lifetime: Lifetime.root(), sandbox: { spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 2, maxAwake: 1, memoryMB: 128 } });
    expect((await alice.budget()).used.nodes).toBe(3);
    const count = (await allNodes(op)).length;

    for (const budget of [{ maxAwake: 3 }, { memoryMB: 257 }, { maxNodes: 3 }]) {
      const err = await failure(alice.spawn({ lifetime: Lifetime.root(), budget }));
      expect(err.code).toBe('ERR_BUDGET_EXHAUSTED');
    }
    expect((await alice.budget()).used.nodes).toBe(3);

    for (const budget of [{ maxAwake: 2 }, { memoryMB: 129 }, { maxNodes: 2 }]) {
      const err = await failure(alice.at(parent, (ctx, b: { maxAwake?: number; memoryMB?: number; maxNodes?: number }) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), budget: b }), budget));
      expect(err.code).toBe('ERR_BUDGET_EXHAUSTED');
    }
    expect((await op.budget(parent)).used.nodes).toBe(0);
    expect((await allNodes(op)).length).toBe(count);

    // Asking exactly what is there is fine.
    await alice.at(parent, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), budget: { maxAwake: 1, memoryMB: 128, maxNodes: 1 } }));
    expect((await op.budget(parent)).used.nodes).toBe(2);
  });
});

describe('budgets: maxAwake and memoryMB on wake', () => {
  it('waking a third node under maxAwake 2 puts the least recently used idle node to sleep', async () => {
    // Two ready blanks, and n1 is hot (two evals): n2's wake takes a blank rather than n1's worker.
    const { container, url, client: op } = await startContainer({ poolMin: 2 });
    await container.warm();
    const alice = await newClient(url);
    await op.grant(alice.here, { maxNodes: 3, maxAwake: 2, memoryMB: 1024 });
    const [n1, n2, n3] = (await alice.spawnMany(3, { lifetime: Lifetime.root() })) as [NodeHandle, NodeHandle, NodeHandle];
    const { wakes, sleeps } = watch(container);

    expect(await alice.at(n1, () => 1)).toBe(1);
    expect(await alice.at(n1, () => 1)).toBe(1);
    expect(await alice.at(n2, () => 2)).toBe(2);
    expect(sleeps).toEqual([]);
    expect((await alice.budget()).used.awake).toBe(2);
    const pid2 = (await alice.describe(n2)).pid;

    expect(await alice.at(n3, () => 3)).toBe(3);
    expect(sleeps).toEqual([[n1.id, 'idle']]);
    expect(wakes).toEqual([n1.id, n2.id, n3.id]);
    expect((await alice.describe(n1)).status).toBe('asleep');
    expect((await alice.describe(n2)).pid).toBe(pid2);
    expect((await alice.describe(n3)).status).not.toBe('asleep');
    expect((await alice.budget()).used.awake).toBe(2);

    // Least recently used, not first woken: touch n2, then wake n1 again; n3 is the one to go.
    expect(await alice.at(n2, () => 'touch')).toBe('touch');
    expect(await alice.at(n1, () => 'back')).toBe('back');
    expect(sleeps).toEqual([[n1.id, 'idle'], [n3.id, 'idle']]);
    expect((await alice.describe(n2)).pid).toBe(pid2);
    expect((await alice.budget()).used.awake).toBe(2);
  });

  it('eviction stays under the full budget: another principal\'s older idle node is left awake', async () => {
    const { container, url, client: op } = await startContainer();
    const alice = await newClient(url);
    const bob = await newClient(url);
    await op.grant(alice.here, { maxNodes: 2, maxAwake: 1, memoryMB: 256 });
    await op.grant(bob.here, { maxNodes: 1, maxAwake: 1, memoryMB: 256 });
    const b1 = await bob.spawn({ lifetime: Lifetime.root() });
    const [a1, a2] = (await alice.spawnMany(2, { lifetime: Lifetime.root() })) as [NodeHandle, NodeHandle];
    const { sleeps } = watch(container);

    await bob.at(b1, () => 'first, so least recently used');
    const bobPid = (await bob.describe(b1)).pid;
    await alice.at(a1, () => 1);
    await alice.at(a2, () => 2);
    expect(sleeps).toEqual([[a1.id, 'idle']]);
    expect((await bob.describe(b1)).pid).toBe(bobPid);
    expect((await bob.budget()).used.awake).toBe(1);
    expect((await alice.budget()).used.awake).toBe(1);
  });

  it('a node\'s maxAwake bounds its awake subtree: itself and its children share it', async () => {
    const { container, client: op } = await startContainer();
    const top = await op.spawn({ lifetime: Lifetime.root(), sandbox: { spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 2, maxAwake: 2 } });
    const c1 = await op.at(top, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked() }));
    const c2 = await op.at(top, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked() }));
    expect((await op.budget(top)).used.awake).toBe(1);
    const { sleeps } = watch(container);

    await op.at(c1, () => 'c1');
    expect((await op.budget(top)).used.awake).toBe(2);
    expect(sleeps).toEqual([]);
    // Full: the least recently used idle node under `top` (top itself) sleeps so c2 can wake.
    await op.at(c2, () => 'c2');
    expect(sleeps).toEqual([[top.id, 'idle']]);
    expect((await op.describe(c1)).status).not.toBe('asleep');
    expect((await op.budget(top)).used.awake).toBe(2);
  });

  it('when every awake node under the full budget is busy, the wake is refused with ERR_BUDGET_EXHAUSTED and nothing is put to sleep', async () => {
    const { container, url, client: op } = await startContainer();
    const alice = await newClient(url);
    await op.grant(alice.here, { maxNodes: 3, maxAwake: 2, memoryMB: 1024 });
    const [n1, n2, n3] = (await alice.spawnMany(3, { lifetime: Lifetime.root(), sandbox: { timeoutMs: 20_000 } })) as [NodeHandle, NodeHandle, NodeHandle];
    const { wakes, sleeps } = watch(container);

    const busy1 = alice.at(n1, () => new Promise(() => {})).catch((e: unknown) => e);
    const busy2 = alice.at(n2, () => new Promise(() => {})).catch((e: unknown) => e);
    await until(async () => (await alice.describe(n1)).status === 'active' && (await alice.describe(n2)).status === 'active', 10_000, 'both nodes busy');
    const pid1 = (await alice.describe(n1)).pid!;
    const pid2 = (await alice.describe(n2)).pid!;
    // Should an assertion fail, end the busy workers before the container's graceful close waits on them.
    defer(async () => {
      for (const pid of [pid1, pid2]) if (alive(pid)) process.kill(pid, 'SIGKILL');
    });

    const refused = await failure(alice.at(n3, () => 3));
    expect(refused.code).toBe('ERR_BUDGET_EXHAUSTED');
    expect(sleeps).toEqual([]);
    expect([...wakes].sort()).toEqual([n1.id, n2.id].sort());
    expect((await alice.describe(n3)).status).toBe('asleep');
    expect((await alice.describe(n1)).status).toBe('active');
    expect((await alice.describe(n2)).status).toBe('active');
    expect((await alice.budget()).used.awake).toBe(2);

    // End one busy eval: its slot frees and the third node wakes.
    const slept = new Promise((resolve) => container.on('sleep', (id, why) => id === n1.id && resolve(why)));
    process.kill(pid1, 'SIGKILL');
    expect(((await busy1) as { code: string }).code).toBe('ERR_WORKER_CRASHED');
    expect(await slept).toBe('crash');
    expect(await alice.at(n3, () => 3)).toBe(3);
    expect((await alice.budget()).used.awake).toBe(2);

    process.kill(pid2, 'SIGKILL');
    expect(((await busy2) as { code: string }).code).toBe('ERR_WORKER_CRASHED');
    expect(alive(pid1)).toBe(false);
  });

  it('concurrent wakes never hold more than maxAwake processes', async () => {
    const { container, url, client: op } = await startContainer();
    const alice = await newClient(url);
    await op.grant(alice.here, { maxNodes: 6, maxAwake: 2, memoryMB: 1024 });
    const nodes = await alice.spawnMany(6, { lifetime: Lifetime.root() });
    let awake = 0;
    let most = 0;
    container.on('wake', () => (most = Math.max(most, ++awake)));
    container.on('sleep', () => awake--);
    const results = await Promise.all(nodes.map((n, i) => alice.at(n, (_ctx, k: number) => k, i).then((v) => v, (e: { code?: string }) => e.code)));
    for (const [i, r] of results.entries()) expect([i, 'ERR_BUDGET_EXHAUSTED']).toContain(r);
    expect(results.filter((r) => typeof r === 'number').length).toBeGreaterThanOrEqual(2);
    expect(most).toBeLessThanOrEqual(2);
    const used = (await alice.budget()).used.awake;
    expect(used).toBeLessThanOrEqual(2);
    const statuses = await Promise.all(nodes.map(async (n) => (await alice.describe(n)).status));
    expect(statuses.filter((s) => s !== 'asleep')).toHaveLength(used);
  });

  it('memoryMB: a second node gets what is left of the grant (36 of 64 MB asked); a third evicts the least recently used', async () => {
    const { container, url, client: op } = await startContainer({ memoryMB: 64 });
    const alice = await newClient(url);
    await op.grant(alice.here, { maxNodes: 3, maxAwake: 3, memoryMB: 100 });
    const [n1, n2, n3] = (await alice.spawnMany(3, { lifetime: Lifetime.root(), sandbox: { memoryMB: 64 } })) as [NodeHandle, NodeHandle, NodeHandle];
    const { sleeps } = watch(container);

    await alice.at(n1, () => 1);
    expect((await alice.describe(n1)).memoryMB).toBe(64);
    expect(await alice.at(n2, () => 2)).toBe(2);
    const d2 = await alice.describe(n2);
    expect(d2.memoryMB).toBe(36);
    expect(d2.sandbox.memoryMB).toBe(64);
    expect((await alice.budget()).used).toMatchObject({ nodes: 3, awake: 2, memoryMB: 100 });
    expect(sleeps).toEqual([]);

    // Nothing left (fewer than 16 MB): the least recently used idle node goes to sleep to make room.
    expect(await alice.at(n3, () => 3)).toBe(3);
    expect(sleeps).toEqual([[n1.id, 'idle']]);
    expect((await alice.describe(n3)).memoryMB).toBe(64);
    expect((await alice.describe(n2)).pid).toBe(d2.pid);
    expect((await alice.budget()).used).toMatchObject({ nodes: 3, awake: 2, memoryMB: 100 });
  });

  it('a node\'s own memoryMB budget caps the memory its process is granted', async () => {
    const { url, client: op } = await startContainer({ memoryMB: 64 });
    const alice = await newClient(url);
    await op.grant(alice.here, { maxNodes: 2, maxAwake: 2, memoryMB: 1000 });
    const small = await alice.spawn({ lifetime: Lifetime.root(), budget: { memoryMB: 40 } });
    expect(await alice.at(small, () => 'ok')).toBe('ok');
    expect((await alice.describe(small)).memoryMB).toBe(40);
    expect((await op.budget(small)).used).toMatchObject({ nodes: 0, awake: 1, memoryMB: 40 });
    expect((await alice.budget()).used.memoryMB).toBe(40);
  });

  it('sleeping nodes count only against maxNodes: 20 asleep under maxAwake 1, and any of them wakes', async () => {
    const { container, url, client: op } = await startContainer();
    const alice = await newClient(url);
    await op.grant(alice.here, { maxNodes: 20, maxAwake: 1, memoryMB: 128 });
    const nodes = await alice.spawnMany(20, { lifetime: Lifetime.root() });
    expect((await alice.budget()).used).toMatchObject({ nodes: 20, awake: 0, memoryMB: 0 });
    const { sleeps } = watch(container);

    expect(await alice.at(nodes[0]!, (ctx) => ctx.here.id)).toBe(nodes[0]!.id);
    expect((await alice.budget()).used.awake).toBe(1);
    expect(await alice.at(nodes[19]!, (ctx) => ctx.here.id)).toBe(nodes[19]!.id);
    expect(sleeps).toEqual([[nodes[0]!.id, 'idle']]);
    expect((await alice.budget()).used).toMatchObject({ nodes: 20, awake: 1, memoryMB: 64 });
    expect((await failure(alice.spawn({ lifetime: Lifetime.root() }))).code).toBe('ERR_BUDGET_EXHAUSTED');
  });
});
