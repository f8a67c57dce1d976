import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connect, Lifetime, type Client, type NodeHandle, type NodeRefLike } from 'keynode';
import { defer, startContainer } from '../helpers/containers.js';
import { childrenOf, failure } from './util.js';

async function newClient(url: string): Promise<Client> {
  const c = await connect(url);
  defer(() => c.close());
  return c;
}

/** Spawn options as plain data, the way a node's code hands them to ctx.spawn. */
type ChildSpec = {
  lifetime: { kind: string; seconds?: number };
  sandbox?: Record<string, unknown>;
  acl?: string[];
  budget?: { maxNodes?: number; maxAwake?: number; memoryMB?: number };
};

/** Inside `parent`: spawn a child and, only if that worked, record it in the parent's ref `kids`. */
function spawnFrom(client: Client, parent: NodeHandle, spec: ChildSpec): Promise<NodeRefLike> {
  return client.at(
    parent,
    async (ctx, s: ChildSpec) => {
      const kids = (await ctx.ref<string[]>('kids').get()) ?? [];
      const kid = await ctx.spawn(s);
      await ctx.ref('kids').set([...kids, kid.id]);
      return kid;
    },
    spec,
  );
}

describe('sandbox.spawn and narrowing: a node never grants a child more than it has', () => {
  it('ctx.spawn gives only the lifetimes the sandbox allows; sandbox.spawn false allows none', async () => {
    const { client } = await startContainer();
    const closed = await client.spawn({ lifetime: Lifetime.root(), budget: { maxNodes: 2 } });
    const noSpawn = await failure(spawnFrom(client, closed, { lifetime: { kind: 'linked' } }));
    expect(noSpawn.code).toBe('ERR_SANDBOX');
    expect(await childrenOf(client, closed.id)).toEqual([]);
    expect((await client.budget(closed)).used.nodes).toBe(0);

    const parent = await client.spawn({ lifetime: Lifetime.root(), sandbox: { spawn: { lifetimes: ['linked', 'ephemeral'] } }, budget: { maxNodes: 4 } });
    const linked = await spawnFrom(client, parent, { lifetime: { kind: 'linked' } });
    const ephemeral = await spawnFrom(client, parent, { lifetime: { kind: 'ephemeral' } });
    expect(linked.id).toMatch(/^[a-z2-7]{52}$/);
    expect((await client.describe(linked)).lifetime).toEqual({ kind: 'linked' });
    expect((await client.describe(ephemeral)).lifetime).toEqual({ kind: 'ephemeral' });
    expect((await client.describe(linked)).parent).toBe(parent.id);
    // The reference works with ctx.at and ctx.destroy, and lives in the parent's refs.
    expect(await client.at(parent, async (ctx) => {
      const [first] = (await ctx.ref<string[]>('kids').get())!;
      return ctx.at(first!, (c) => c.here.id);
    })).toBe(linked.id);

    for (const lifetime of [{ kind: 'root' }, { kind: 'resetting', seconds: 60 }]) {
      const err = await failure(spawnFrom(client, parent, { lifetime }));
      expect(err.code).toBe('ERR_SANDBOX');
    }
    expect(await client.at(parent, (ctx) => ctx.ref('kids').get())).toEqual([linked.id, ephemeral.id]);
    expect(await childrenOf(client, parent.id)).toEqual([linked.id, ephemeral.id].sort());
    expect((await client.budget(parent)).used.nodes).toBe(2);

    await client.at(parent, (ctx, kid: string) => ctx.destroy(kid), linked.url);
    expect((await failure(client.describe(linked))).code).toMatch(/^ERR_NODE_(DESTROYED|NOT_FOUND)$/);
    expect((await client.budget(parent)).used.nodes).toBe(1);
  });

  it('every wider ask is refused with its code, leaving the parent\'s state, budget and children unchanged', async () => {
    const { client } = await startContainer();
    const contact = await client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const outsider = await client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const parent = await client.spawn({
      lifetime: Lifetime.root(),
      sandbox: { spawn: { lifetimes: ['linked'] }, contacts: [contact.url], memoryMB: 64, timeoutMs: 2000, maxMessageBytes: 64 * 1024 },
      budget: { maxNodes: 3, maxAwake: 4, memoryMB: 512 },
    });

    // What it may give, it can: its own contacts (or fewer), smaller resources, its own lifetimes.
    const ok = await spawnFrom(client, parent, {
      lifetime: { kind: 'linked' },
      sandbox: { contacts: [contact.url], memoryMB: 32, timeoutMs: 1000, maxMessageBytes: 4096, spawn: { lifetimes: ['linked'] } },
    });
    const okInfo = await client.describe(ok);
    expect(okInfo.sandbox).toMatchObject({ contacts: [contact.url], memoryMB: 32, timeoutMs: 1000, maxMessageBytes: 4096, spawn: { lifetimes: ['linked'] } });
    // Omitted resources come from the parent, never the container's wider defaults.
    const plain = await spawnFrom(client, parent, { lifetime: { kind: 'linked' } });
    expect((await client.describe(plain)).sandbox).toMatchObject({ memoryMB: 64, timeoutMs: 2000, maxMessageBytes: 64 * 1024, contacts: [], spawn: false });

    const before = {
      kids: await client.at(parent, (ctx) => ctx.ref('kids').get()),
      used: (await client.budget(parent)).used.nodes,
      children: await childrenOf(client, parent.id),
    };
    expect(before.kids).toEqual([ok.id, plain.id]);
    expect(before.used).toBe(2);

    const refusals: [string, ChildSpec, string][] = [
      ["contacts 'any' under a list", { lifetime: { kind: 'linked' }, sandbox: { contacts: 'any' } }, 'ERR_SANDBOX'],
      ['a contact the parent lacks', { lifetime: { kind: 'linked' }, sandbox: { contacts: [outsider.url] } }, 'ERR_SANDBOX'],
      ['a contact the parent lacks, by ID', { lifetime: { kind: 'linked' }, sandbox: { contacts: [contact.id, outsider.id] } }, 'ERR_SANDBOX'],
      ['more memoryMB', { lifetime: { kind: 'linked' }, sandbox: { memoryMB: 65 } }, 'ERR_SANDBOX'],
      ['more timeoutMs', { lifetime: { kind: 'linked' }, sandbox: { timeoutMs: 2001 } }, 'ERR_SANDBOX'],
      ['more maxMessageBytes', { lifetime: { kind: 'linked' }, sandbox: { maxMessageBytes: 64 * 1024 + 1 } }, 'ERR_SANDBOX'],
      ['spawn lifetimes the parent lacks', { lifetime: { kind: 'linked' }, sandbox: { spawn: { lifetimes: ['linked', 'root'] } } }, 'ERR_SANDBOX'],
      ['a lifetime the parent may not give', { lifetime: { kind: 'root' } }, 'ERR_SANDBOX'],
      ['a capability on a node the parent cannot sign for', { lifetime: { kind: 'linked' }, sandbox: { capabilities: { peek: { node: outsider.url, fn: '(ctx) => ctx.ref("x").get()' } } } }, 'ERR_ACCESS_DENIED'],
      ['a bigger maxAwake', { lifetime: { kind: 'linked' }, budget: { maxAwake: 5 } }, 'ERR_BUDGET_EXHAUSTED'],
      ['a bigger memoryMB budget', { lifetime: { kind: 'linked' }, budget: { memoryMB: 513 } }, 'ERR_BUDGET_EXHAUSTED'],
      ['more nodes than are left', { lifetime: { kind: 'linked' }, budget: { maxNodes: 1 } }, 'ERR_BUDGET_EXHAUSTED'],
    ];
    for (const [what, spec, code] of refusals) {
      const err = await failure(spawnFrom(client, parent, spec));
      expect({ what, code: err.code }).toEqual({ what, code });
      expect({ what, kids: await client.at(parent, (ctx) => ctx.ref('kids').get()) }).toEqual({ what, kids: before.kids });
      expect({ what, used: (await client.budget(parent)).used.nodes }).toEqual({ what, used: before.used });
      expect({ what, children: await childrenOf(client, parent.id) }).toEqual({ what, children: before.children });
    }

    // The last slot is still there after all those refusals.
    const last = await spawnFrom(client, parent, { lifetime: { kind: 'linked' } });
    expect((await client.budget(parent)).used.nodes).toBe(3);
    expect(await client.at(parent, (ctx) => ctx.ref('kids').get())).toEqual([ok.id, plain.id, last.id]);
  });

  it('sandbox.spawn with an empty lifetime list allows no spawn, checked by the container', async () => {
    const { client } = await startContainer();
    const parent = await client.spawn({ lifetime: Lifetime.root(), sandbox: { spawn: { lifetimes: [] } }, budget: { maxNodes: 2 } });
    for (const kind of ['linked', 'ephemeral', 'root']) {
      const err = await failure(spawnFrom(client, parent, { lifetime: { kind } }));
      expect(err.code).toBe('ERR_SANDBOX');
    }
    expect(await childrenOf(client, parent.id)).toEqual([]);
    expect((await client.budget(parent)).used.nodes).toBe(0);
  });
});

describe('sandbox.contacts', () => {
  it('ctx.at outside the list is refused with ERR_SANDBOX before anything reaches the target; descendants are always reachable', async () => {
    const { container, client } = await startContainer();
    const listed = await client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const unlisted = await client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const parent = await client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [listed.url], spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 2 } });
    const child = await spawnFrom(client, parent, { lifetime: { kind: 'linked' }, sandbox: { spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 1 } });
    const grandchild = (await client.at(child as NodeHandle, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked() }))) as NodeRefLike;
    const wakes: string[] = [];
    container.on('wake', (id) => wakes.push(id));

    expect(await client.at(parent, (ctx, t: string) => ctx.at(t, (c) => c.here.id), listed.url)).toBe(listed.id);
    expect(await client.at(parent, (ctx, t: string) => ctx.at(t, (c) => c.here.id), child.url)).toBe(child.id);
    expect(await client.at(parent, (ctx, t: string) => ctx.at(t, (c) => c.here.id), grandchild.url)).toBe(grandchild.id);
    expect(await client.at(parent, (ctx, t: string) => ctx.at(t, (c) => c.here.id), grandchild.id)).toBe(grandchild.id);

    for (const target of [unlisted.url, unlisted.id]) {
      const err = await failure(client.at(parent, (ctx, t: string) => ctx.at(t, () => 'reached'), target));
      expect(err.code).toBe('ERR_SANDBOX');
    }
    expect(wakes).not.toContain(unlisted.id);
    expect((await client.describe(unlisted)).status).toBe('asleep');

    // A child's contacts default to none: even the parent's listed contact is out of its reach.
    const fromChild = await failure(client.at(child as NodeHandle, (ctx, t: string) => ctx.at(t, () => 'reached'), listed.url));
    expect(fromChild.code).toBe('ERR_SANDBOX');
  });

  it('a listed contact on another container cannot be used to send to a different host', async () => {
    const a = await startContainer();
    const b = await startContainer();
    const remote = await a.client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const caller = await b.client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [remote.url] } });
    expect(await b.client.at(caller, (ctx, t: string) => ctx.at(t, (c) => c.here.id), remote.url)).toBe(remote.id);

    // Some other HTTP server: the node must not be able to reach it by putting a listed node's ID in its path.
    const received: string[] = [];
    const other = createServer((req, res) => {
      received.push(`${req.method} ${req.url}`);
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    defer(() => new Promise((resolve) => other.close(resolve)));
    const elsewhere = `http://127.0.0.1:${(other.address() as AddressInfo).port}/${remote.id}`;

    const err = await failure(b.client.at(caller, (ctx, t: string, secret: string) => ctx.at(t, (_c, s: string) => `leaked ${s}`, secret), elsewhere, 'exfiltrated'));
    expect({ code: err.code, received }).toEqual({ code: 'ERR_SANDBOX', received: [] });
  });
});

describe('sandbox.refs', () => {
  it("'read': reads work and writes fail with ERR_SANDBOX, leaving the state as it was; 'none' grants no reads", async () => {
    const { client } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(node, async (ctx) => {
      await ctx.ref('name').set('before');
      await ctx.index('tags').put('a', 1);
    });
    await client.update(node, { sandbox: { refs: 'read' } });
    expect((await client.describe(node)).sandbox.refs).toBe('read');

    expect(await client.at(node, async (ctx) => [await ctx.ref('name').get(), await ctx.index('tags').get('a'), await ctx.index('tags').entries()])).toEqual(['before', 1, [['a', 1]]]);
    const setRef = await failure(client.at(node, (ctx) => ctx.ref('name').set('after')));
    expect(setRef.code).toBe('ERR_SANDBOX');
    const putIndex = await failure(client.at(node, (ctx) => ctx.index('tags').put('b', 2)));
    expect(putIndex.code).toBe('ERR_SANDBOX');
    const delIndex = await failure(client.at(node, (ctx) => ctx.index('tags').delete('a')));
    expect(delIndex.code).toBe('ERR_SANDBOX');
    // A write refused inside the node can be caught by its code; the eval still changes nothing.
    expect(await client.at(node, async (ctx) => {
      try {
        await ctx.ref('name').set('sneaky');
        return 'wrote';
      } catch (e) {
        return (e as { code?: string }).code;
      }
    })).toBe('ERR_SANDBOX');

    await client.update(node, { sandbox: { refs: 'readwrite' } });
    expect(await client.at(node, async (ctx) => [await ctx.ref('name').get(), await ctx.index('tags').entries()])).toEqual(['before', [['a', 1]]]);

    const readOnly = await client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'read' } });
    expect(await client.at(readOnly, async (ctx) => (await ctx.ref('anything').get()) === undefined)).toBe(true);
    expect((await failure(client.at(readOnly, (ctx) => ctx.ref('anything').set(1)))).code).toBe('ERR_SANDBOX');

    const none = await client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'none' } });
    expect((await failure(client.at(none, (ctx) => ctx.ref('anything').get()))).code).toBe('ERR_SANDBOX');
    expect((await failure(client.at(none, (ctx) => ctx.index('anything').entries()))).code).toBe('ERR_SANDBOX');
    expect(await client.at(none, () => 'still computes')).toBe('still computes');
  });
});

describe('AccessControl', () => {
  it("'public' only when listed; a listed principal may eval; the parent always may; the operator is no back door", async () => {
    const { url, client: op } = await startContainer();
    const alice = await newClient(url);
    const friend = await newClient(url);
    const stranger = await newClient(url);
    await op.grant(alice.here, { maxNodes: 3, maxAwake: 3, memoryMB: 512 });
    const closed = await alice.spawn({ lifetime: Lifetime.root() });
    const open = await alice.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const listed = await alice.spawn({ lifetime: Lifetime.root(), acl: [friend.here] });

    expect(await alice.at(closed, () => 'parent')).toBe('parent');
    expect((await failure(stranger.at(closed, () => 'no'))).code).toBe('ERR_ACCESS_DENIED');
    expect((await failure(friend.at(closed, () => 'no'))).code).toBe('ERR_ACCESS_DENIED');
    expect((await failure(op.at(closed, () => 'no'))).code).toBe('ERR_ACCESS_DENIED');

    expect(await stranger.at(open, (ctx) => ctx.caller)).toBe(stranger.here.id);

    expect(await friend.at(listed, (ctx) => ctx.caller)).toBe(friend.here.id);
    expect((await failure(stranger.at(listed, () => 'no'))).code).toBe('ERR_ACCESS_DENIED');
    expect((await failure(op.at(listed, () => 'no'))).code).toBe('ERR_ACCESS_DENIED');
  });

  it('the parent widens and narrows the ACL with update; nobody else may; capabilities cannot be changed', async () => {
    const { url, client: op } = await startContainer();
    const alice = await newClient(url);
    const stranger = await newClient(url);
    await op.grant(alice.here, { maxNodes: 3, maxAwake: 3, memoryMB: 512 });
    const node = await alice.spawn({ lifetime: Lifetime.root(), sandbox: { spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 1 } });
    await alice.at(node, (ctx) => ctx.ref('v').set('hello'));
    expect((await failure(stranger.at(node, (ctx) => ctx.ref('v').get()))).code).toBe('ERR_ACCESS_DENIED');

    const widened = await alice.update(node, { acl: [stranger.here] });
    expect(widened.acl).toEqual([stranger.here.id]);
    expect(await stranger.at(node, (ctx) => ctx.ref('v').get())).toBe('hello');

    // Not the parent: refused, and the ACL stays as the parent left it.
    for (const who of [stranger, op]) {
      const err = await failure(who.update(node, { acl: ['public'] }));
      expect(err.code).toBe('ERR_ACCESS_DENIED');
      const sandboxErr = await failure(who.update(node, { sandbox: { contacts: 'any' } }));
      expect(sandboxErr.code).toBe('ERR_ACCESS_DENIED');
    }
    const info = await alice.describe(node);
    expect(info.acl).toEqual([stranger.here.id]);
    expect(info.sandbox.contacts).toEqual([]);

    // Capabilities are bound at spawn: an update naming them is refused and changes nothing.
    const caps = await failure(alice.update(node, { sandbox: { capabilities: {} } as never }));
    expect(caps.code).toBe('ERR_BAD_POLICY');
    const capsWithAcl = await failure(alice.update(node, { acl: ['public'], sandbox: { capabilities: {} } as never }));
    expect(capsWithAcl.code).toBe('ERR_BAD_POLICY');
    expect((await alice.describe(node)).acl).toEqual([stranger.here.id]);

    // Narrowing again shuts the stranger out.
    await alice.update(node, { acl: [] });
    expect((await failure(stranger.at(node, () => 'no'))).code).toBe('ERR_ACCESS_DENIED');

    // Only the parent: an ancestor further up may not update a node's grandchild.
    const child = await alice.at(node, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked() }));
    expect(await alice.at(child, () => 'ancestor may eval')).toBe('ancestor may eval');
    const grand = await failure(alice.update(child, { acl: ['public'] }));
    expect(grand.code).toBe('ERR_ACCESS_DENIED');
    expect((await alice.describe(child)).acl).toEqual([]);
  });
});
