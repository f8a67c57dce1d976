/**
 * A node's children placed on another member of its fleet (ctx.spawn with `placement`): spawned there by the
 * node itself, charged to its own grant there, its child there; lifetimes that need the parent's store
 * refused; a container outside the fleet never asked; a member's reply checked as hostile input.
 */
import { describe, expect, it } from 'vitest';
import { Identity, Lifetime } from 'keynode';
import { decode, encode } from '../../dist/protocol/index.js';
import { startContainer, until, type TestContainer } from '../helpers/containers.js';
import { freePorts, startFleet } from '../helpers/fleet-local.js';
import { rewritingProxy } from '../helpers/wire.js';
import { failure as caught } from '../policies/util.js';

const GRANT = { maxNodes: 4, maxAwake: 2, memoryMB: 256 };
const SANDBOX = { contacts: 'any' as const, timeoutMs: 20_000, spawn: { lifetimes: ['root' as const, 'resetting' as const, 'leased' as const, 'linked' as const, 'ephemeral' as const] } };

const idOf = (url: string) => url.slice(url.lastIndexOf('/') + 1);

describe('children placed on another member', () => {
  let a: TestContainer;
  let b: TestContainer;
  let c: TestContainer;

  it('a node spawns Root, Resetting and Leased children on another member (on, near by URL and by ID), calls them, and is their parent there', async () => {
    [a, b, c] = (await startFleet(3)) as [TestContainer, TestContainer, TestContainer];
    const parent = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: SANDBOX, budget: { maxNodes: 8 } });
    await b.client.grant(parent, GRANT);
    const onB = await b.client.spawn({ lifetime: Lifetime.root() });
    const kids = await a.client.at(parent, async (ctx, on: string, nearUrl: string, nearId: string) => {
      const placed = [
        await ctx.spawn({ lifetime: ctx.Lifetime.root(), placement: { on } }),
        await ctx.spawn({ lifetime: ctx.Lifetime.resetting(3600), placement: { near: nearUrl } }),
        await ctx.spawn({ lifetime: ctx.Lifetime.root(), placement: { near: nearId } }),
        await ctx.spawn({ lifetime: ctx.Lifetime.leased(3600, { node: ctx.here, fn: () => true }), placement: { on } }),
      ];
      const out = [];
      for (const kid of placed) out.push({ url: kid.url as string, caller: await ctx.at(kid, (k) => k.caller) });
      return out;
    }, b.url, onB.url, onB.id);
    for (const kid of kids) {
      expect(new URL(kid.url).origin).toBe(b.url);
      // The child ran the parent's call as sent by the parent itself, not by its container.
      expect(kid.caller).toBe(parent.id);
      const info = await b.client.describe(kid.url);
      expect(info.parent).toBe(parent.id);
      expect(info.url).toBe(kid.url);
    }
    expect((await b.client.describe(kids[1]!.url)).lifetime).toMatchObject({ kind: 'resetting' });
    // The lease check names the parent on A by its URL, as the parent's container saw it.
    expect((await b.client.describe(kids[3]!.url)).lifetime).toMatchObject({ kind: 'leased', check: { node: parent.url } });
    // Charged to the parent's own grant on B, not to anything of A's.
    expect((await b.client.budget(parent.id)).used.nodes).toBe(4);
    expect(await b.container.runtime.store.getNode(idOf(kids[0]!.url) as never)).toBeDefined();
    expect(await a.container.runtime.store.getNode(idOf(kids[0]!.url) as never)).toBeUndefined();
    // The parent administers its child there as any parent does.
    await a.client.at(parent, async (ctx, url: string) => ctx.destroy(url), kids[2]!.url);
    expect((await caught(b.client.describe(kids[2]!.url))).code).toMatch(/ERR_NODE_(DESTROYED|NOT_FOUND)/);
  });

  it('without a grant on the member, ERR_BUDGET_EXHAUSTED reaches the node with what to do', async () => {
    const parent = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: SANDBOX, budget: { maxNodes: 2 } });
    const err = await caught(a.client.at(parent, async (ctx, on: string) => ctx.spawn({ lifetime: ctx.Lifetime.root(), placement: { on } }), c.url));
    expect(err.code).toBe('ERR_BUDGET_EXHAUSTED');
    expect(err.message).toContain(`keynode grant ${parent.id}`);
    expect(err.message).toContain(c.url);
  });

  it('Linked and Ephemeral children, capabilities, and lifetimes the parent may not give are refused before anything is sent', async () => {
    const parent = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { ...SANDBOX, spawn: { lifetimes: ['root', 'linked', 'ephemeral'] } }, budget: { maxNodes: 2 } });
    await b.client.grant(parent, GRANT);
    const before = b.container.sessions.of(a.operator.id).length;
    for (const kind of ['linked', 'ephemeral'] as const) {
      const err = await caught(a.client.at(parent, async (ctx, on: string, k: 'linked' | 'ephemeral') => ctx.spawn({ lifetime: ctx.Lifetime[k](), placement: { on } }), b.url, kind));
      expect(err.code).toBe('ERR_BAD_POLICY');
      expect(err.message).toContain(`a ${kind} child`);
      expect(err.message).toContain('Root, Resetting or Leased');
    }
    const cap = await caught(a.client.at(parent, async (ctx, on: string) => ctx.spawn({ lifetime: ctx.Lifetime.root(), sandbox: { capabilities: { me: { node: ctx.here, fn: () => 1 } } }, placement: { on } }), b.url));
    expect(cap.code).toBe('ERR_BAD_POLICY');
    const lifetime = await caught(a.client.at(parent, async (ctx, on: string) => ctx.spawn({ lifetime: ctx.Lifetime.resetting(60), placement: { on } }), b.url));
    expect(lifetime.code).toBe('ERR_SANDBOX');
    expect((await b.client.budget(parent.id)).used.nodes).toBe(0);
    expect(b.container.sessions.of(a.operator.id).length).toBe(before);
  });

  it('a container outside the fleet is refused before any request reaches it', async () => {
    const outsider = await startContainer();
    const watched = await rewritingProxy(outsider.url, (r) => r);
    const parent = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: SANDBOX, budget: { maxNodes: 2 } });
    await outsider.client.grant(parent, GRANT);
    for (const on of [outsider.url, watched.url]) {
      const err = await caught(a.client.at(parent, async (ctx, there: string) => ctx.spawn({ lifetime: ctx.Lifetime.root(), placement: { on: there } }), on));
      expect(err.code).toBe('ERR_BAD_POLICY');
      expect(err.message).toContain('not a member');
    }
    expect(watched.requests.length).toBe(0);
    expect(outsider.container.sessions.of(a.operator.id).length).toBe(0);
    expect((await outsider.client.budget(parent.id)).used.nodes).toBe(0);
  });

  it("a member's spawn reply is hostile input: altered in transit, or naming a node elsewhere, it is refused", async () => {
    // A member that names its nodes by a host outside the fleet (localhost is not how its peers know it).
    const [port] = await freePorts(1);
    const liar = await startContainer({ port, publicUrl: `http://localhost:${port}` });
    const liarUrl = `http://127.0.0.1:${port}`;
    const altered = await rewritingProxy(b.url, (reply) => {
      let value: unknown;
      try {
        value = (decode(reply.body) as { value?: unknown }).value;
      } catch {
        return reply;
      }
      if (typeof value !== 'object' || value === null || !('nodes' in value)) return reply;
      const forged = { ok: true, value: { nodes: [{ id: Identity.generate().id, url: `${b.url}/${Identity.generate().id}` }] } };
      return { ...reply, body: encode(forged) };
    });
    const d = await startContainer({ peers: [altered.url, liarUrl] });
    const parent = await d.client.spawn({ lifetime: Lifetime.root(), sandbox: SANDBOX, budget: { maxNodes: 2 } });
    await b.client.grant(parent, GRANT);
    await liar.client.grant(parent, GRANT);
    for (const on of [altered.url, liarUrl]) {
      const err = await caught(d.client.at(parent, async (ctx, there: string) => ctx.spawn({ lifetime: ctx.Lifetime.root(), placement: { on: there } }), on));
      expect(err.code).toBe('ERR_BAD_REPLY');
    }
    // Both members did spawn (the reply, not the request, was refused): the parent was told no URL it cannot trust.
    expect((await b.client.budget(parent.id)).used.nodes).toBe(1);
    expect((await liar.client.budget(parent.id)).used.nodes).toBe(1);
  });
});

describe('tombstones of parents whose children live elsewhere', () => {
  it('a child placed on another member that moves back under its destroyed parent makes the parent’s tombstone permanent', async () => {
    const [a, b] = (await startFleet(2, { tombstoneTtlMs: 4000 })) as [TestContainer, TestContainer];
    const parent = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: SANDBOX, budget: { maxNodes: 8 } });
    await b.client.grant(parent, GRANT);
    // Spawned on B and charged there: on A the parent never spawned, so its tombstone there may expire.
    const child = await a.client.at(parent, async (ctx, on: string) => (await ctx.spawn({ lifetime: ctx.Lifetime.root(), placement: { on } })).url as string, b.url);
    await a.client.destroy(parent);
    await b.client.move(child, a.url);
    expect((await a.client.describe(idOf(child))).parent).toBe(parent.id);
    const leaf = await a.client.spawn({ lifetime: Lifetime.root() });
    await a.client.destroy(leaf);
    await until(async () => (await caught(a.client.describe(leaf.id))).code === 'ERR_NODE_NOT_FOUND', 20_000, 'the leaf tombstone to expire');
    // Destroyed before the leaf: its tombstone would have gone with the leaf's had the move not kept it.
    expect((await caught(a.client.describe(parent.id))).code).toBe('ERR_NODE_DESTROYED');
  });
});
