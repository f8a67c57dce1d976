/**
 * Moving nodes between the containers of a fleet (three in this process, peers of each other): state,
 * logs, policies and lifetime deadlines travel; the ID stays; old URLs and fleet URLs redirect; writes
 * made while a node moves are neither lost nor applied twice.
 */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type Client, type NodeHandle } from 'keynode';
import { defer, until, type TestContainer } from '../helpers/containers.js';
import { startFleet } from '../helpers/fleet-local.js';
import { exactlyOnceWrite as WRITE } from '../helpers/writes.js';
import { decode, encode } from '../../dist/protocol/index.js';
import { failure as caught } from '../policies/util.js';

let fleet: TestContainer[];

describe('move', () => {
  it('a node moves while 20 clients write to it: every acknowledged write is there exactly once, and old URLs redirect', async () => {
    fleet = await startFleet(3);
    const [a, , c] = fleet as [TestContainer, TestContainer, TestContainer];
    const node = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite', log: true, timeoutMs: 5000 }, acl: ['public'] });
    const oldUrl = node.url;
    const writers: Client[] = [];
    for (let w = 0; w < 20; w++) {
      const client = await connect(a.url, { identity: Identity.generate() });
      defer(() => client.close());
      writers.push(client);
    }
    const acked: string[] = [];
    const failed: unknown[] = [];
    let started = 0;
    let moved = false;
    const firstWrites = new Promise<void>((resolve) => {
      const poll = setInterval(() => started >= 40 && (clearInterval(poll), resolve()), 5);
    });
    const work = writers.map(async (client, w) => {
      for (let i = 0; i < 15; i++) {
        try {
          await client.at(oldUrl, WRITE, w, i);
          acked.push(`${w}:${i}`);
          started++;
        } catch (e) {
          failed.push(e);
        }
      }
    });
    await firstWrites;
    const before = acked.length;
    const result = await a.client.move(node, c.url);
    moved = true;
    await Promise.all(work);
    expect(before).toBeLessThan(300);
    expect(acked.length - before).toBeGreaterThan(0);
    expect(moved).toBe(true);
    expect(failed).toEqual([]);
    expect(result.url).toBe(`${c.url}/${node.id}`);
    expect(result.nodes).toBe(1);

    // Read at the new container directly: every acknowledged write once, and the count says none ran twice.
    const direct = await connect(c.url, { identity: a.operator });
    defer(() => direct.close());
    const { entries, count } = await direct.at(`${c.url}/${node.id}`, async (ctx) => ({ entries: (await ctx.index('writes').entries({ limit: 10000 })).map(([k]: [string]) => k), count: await ctx.ref('count').get() }));
    expect(new Set(entries)).toEqual(new Set(acked));
    expect(entries.length).toBe(acked.length);
    expect(count).toBe(acked.length);

    // The old URL answers through the redirect, for a client that never heard of the move; the ID is the same.
    const stranger = await connect(a.url, { identity: a.operator });
    defer(() => stranger.close());
    expect(await stranger.at(oldUrl, (ctx) => ctx.here)).toEqual({ id: node.id, url: `${c.url}/${node.id}` });
    expect(stranger.urlOf(node)).toBe(`${c.url}/${node.id}`);
    const info = await stranger.describe(oldUrl);
    expect(info.id).toBe(node.id);
    expect(info.url).toBe(`${c.url}/${node.id}`);
    expect(info.sandbox.log).toBe(true);
    expect(info.acl).toEqual(['public']);
    // Logs came along: every acknowledged write logged a line, before and after the move.
    const lines = (await stranger.logs(oldUrl, { limit: 10000 })).map((l) => l.line);
    for (const k of acked) expect(lines).toContain(`write ${k}`);
    // Nothing of it is left on the source, and the target counts it.
    expect(await a.container.runtime.store.getNode(node.id)).toBeUndefined();
    expect((await a.container.runtime.store.getForward(node.id))?.url).toBe(`${c.url}/${node.id}`);
  });

  it("a Resetting node's deadline came along: the target resets it", async () => {
    const [a, b] = fleet as [TestContainer, TestContainer];
    const node = await a.client.spawn({ lifetime: Lifetime.resetting(1), sandbox: { refs: 'readwrite' } });
    await a.client.at(node, async (ctx) => ctx.ref('x').set(1));
    const reset = (async () => {
      for (;;) {
        const [id] = await once(b.container, 'reset');
        if (id === node.id) return;
      }
    })();
    await a.client.move(node, b.url);
    await reset;
    expect(await a.client.at(node, async (ctx) => (await ctx.ref('x').get()) ?? null)).toBe(null);
  });

  it('a fleet URL works through any member: a node on C answers addressed through A; a moved node through one that never had it', async () => {
    const [a, b, c] = fleet as [TestContainer, TestContainer, TestContainer];
    const onC = await c.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite' } });
    await c.client.at(onC, async (ctx) => ctx.ref('v').set('on c'));
    const viaA = await connect(a.url, { identity: c.operator });
    defer(() => viaA.close());
    expect(await viaA.at(`${a.url}/${onC.id}`, async (ctx) => ctx.ref('v').get())).toBe('on c');
    // Moved A → B, then addressed through C, which never had it: C asks its peers, B's own record wins.
    const moving = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite' } });
    await a.client.at(moving, async (ctx) => ctx.ref('v').set('moved'));
    await a.client.move(moving, b.url);
    const viaC = await connect(c.url, { identity: a.operator });
    defer(() => viaC.close());
    expect(await viaC.at(`${c.url}/${moving.id}`, async (ctx) => ctx.ref('v').get())).toBe('moved');
    expect(viaC.urlOf(moving.id)).toBe(`${b.url}/${moving.id}`);
    // A node nowhere in the fleet is still not found.
    const nowhere = Identity.generate().id;
    expect((await caught(viaC.at(`${c.url}/${nowhere}`, () => 1))).code).toBe('ERR_NODE_NOT_FOUND');
  });

  it('a subtree moves whole: a Linked child comes along, and its parent reaches it by the URL it stored', async () => {
    const [a, b] = fleet as [TestContainer, TestContainer];
    const parent: NodeHandle = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite', spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 5 } });
    const child = await a.client.at(parent, async (ctx) => {
      const kid = await ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { refs: 'readwrite' } });
      await ctx.ref('kid').set(kid);
      await ctx.at(kid, async (k: any) => k.ref('n').set(7));
      return kid.url as string;
    });
    const r = await a.client.move(parent, b.url);
    expect(r.nodes).toBe(2);
    // The parent, now on B, reaches its child by the URL it stored (A's): the redirect is followed between containers.
    expect(await a.client.at(parent, async (ctx) => ctx.at(await ctx.ref('kid').get(), async (k: any) => k.ref('n').get()))).toBe(7);
    expect((await a.client.describe(child)).url.startsWith(b.url)).toBe(true);
    // Destroying the parent on B takes its Linked child with it, and gives B's capacity back what the move took.
    const usedBefore = (await b.client.budget()).used.nodes;
    await a.client.destroy(parent);
    expect((await b.client.budget()).used.nodes).toBe(usedBefore - 6);
    expect((await caught(a.client.at(`${b.url}/${child.split('/').pop()}`, () => 1))).code).toMatch(/ERR_NODE_(DESTROYED|NOT_FOUND)/);
  });

  it('capabilities and lease checks that name a node keep working after it moves', async () => {
    const [a, b, c] = fleet as [TestContainer, TestContainer, TestContainer];
    const home = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite' } });
    await a.client.at(home, async (ctx) => ctx.ref('address').set('12 Elm Street'));
    await a.client.at(home, async (ctx) => ctx.ref('active').set(true));
    const guest = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { capabilities: { address: { node: home, fn: async (ctx) => ctx.ref('address').get() } } } });
    const leased = await a.client.spawn({ lifetime: Lifetime.leased(0.2, { node: home, fn: async (ctx) => (await ctx.ref('active').get()) === true }) });
    await a.client.move(home, b.url);
    // The capability and the lease check still name home by its old URL: its container redirects, this one follows.
    expect(await a.client.at(guest, (ctx) => ctx.caps.address())).toBe('12 Elm Street');
    const renewed = (async () => {
      for (;;) {
        const [id, verdict] = await once(a.container, 'lease');
        if (id === leased.id) return verdict;
      }
    })();
    expect(await renewed).toBe('renewed');
    // And from the guest's new container after it moves too.
    await a.client.move(guest, c.url);
    expect(await a.client.at(guest, (ctx) => ctx.caps.address())).toBe('12 Elm Street');
    // The check turning false destroys the leased node, as before the move.
    await a.client.at(home, async (ctx) => ctx.ref('active').set(false));
    for (;;) {
      const [id] = await once(a.container, 'destroy');
      if (id === leased.id) break;
    }
  });

  it("lifetime deadlines keep their time when a node moves: a Leased node's next check, a Resetting node's reset", async () => {
    const [a, b] = fleet as [TestContainer, TestContainer, TestContainer];
    const home = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite' } });
    // Ten-minute periods: no deadline runs during the test; only where each is scheduled is looked at.
    const leased = await a.client.spawn({ lifetime: Lifetime.leased(600, { node: home, fn: async () => true }) });
    const resetting = await a.client.spawn({ lifetime: Lifetime.resetting(600) });
    const scheduled = async (c: TestContainer, id: string) => (await c.container.runtime.store.dueDeadlines(Number.MAX_SAFE_INTEGER - 1, 10_000)).filter((d) => d.id === id);
    for (const [node, kind] of [[leased, 'lease'], [resetting, 'reset']] as const) {
      const [before] = await scheduled(a, node.id);
      expect(before?.kind).toBe(kind);
      // A move takes milliseconds at least: a deadline counted from it would be later than this one.
      await a.client.move(node, b.url);
      expect(await scheduled(b, node.id)).toEqual([{ at: before!.at, id: node.id, kind }]);
    }
    // The source's own lease deadline left with the node (a reset's stays, and finds no node when it comes due).
    expect(await scheduled(a, leased.id)).toEqual([]);

    // A source whose state says later than it could (its clock ahead, or a hostile member): never later than a
    // period from the move here, and the state kept says so.
    const years = Date.now() + 10 * 365 * 86_400_000;
    const ahead = [await a.client.spawn({ lifetime: Lifetime.leased(600, { node: home, fn: async () => true }) }), await a.client.spawn({ lifetime: Lifetime.resetting(600) })];
    await a.container.runtime.store.txn().put('x', ahead[0]!.id, encode({ due: years })).put('x', ahead[1]!.id, encode({ last: years })).commit();
    for (const node of ahead) {
      await a.client.move(node, b.url);
      const after = Date.now();
      const [d] = await scheduled(b, node.id);
      expect(d!.at).toBeLessThanOrEqual(after + 600_000);
      const state = decode((await b.container.runtime.store.sub('x').get(node.id))!) as { due?: number; last?: number };
      expect(state.due ?? state.last).toBeLessThanOrEqual(after + (state.due === undefined ? 0 : 600_000));
    }
  });

  it("an Ephemeral child held by its parent's state moves with it and is still held; dropped, it is collected on the target", async () => {
    const [a, b] = fleet as [TestContainer, TestContainer];
    const parent = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite', spawn: { lifetimes: ['ephemeral'] }, timeoutMs: 10_000 }, budget: { maxNodes: 2 } });
    const kid = await a.client.at(parent, async (ctx) => {
      const k = await ctx.spawn({ lifetime: ctx.Lifetime.ephemeral(), sandbox: { refs: 'readwrite' } });
      await ctx.ref('kid').set(k);
      await ctx.at(k, async (x: any) => x.ref('n').set(1));
      return k.id as string;
    });
    const r = await a.client.move(parent, b.url);
    expect(r.nodes).toBe(2);
    expect(await a.client.at(parent, async (ctx) => ctx.at(await ctx.ref('kid').get(), async (x: any) => x.ref('n').get()))).toBe(1);
    const gone = (async () => {
      for (;;) {
        const [id] = await once(b.container, 'destroy');
        if (id === kid) return;
      }
    })();
    await a.client.at(parent, async (ctx) => ctx.ref('kid').set(null));
    // Put the parent to sleep as soon as its worker says it is idle (rather than after the idle timeout).
    const sup = b.container.supervisor;
    await until(() => !sup.get(parent.id) || sup.get(parent.id)!.quiet, 20_000, 'the parent to be idle');
    const awake = sup.get(parent.id);
    if (awake) await sup.sleep(awake);
    await gone;
  });
});
