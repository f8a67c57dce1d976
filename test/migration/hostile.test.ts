/**
 * Moves and redirects as an attacker sees them: imports from containers that are not peers, moves of nodes
 * the sender does not own, malformed moves from a peer, redirect loops and forged redirects.
 */
import { describe, expect, it } from 'vitest';
import { connect, Identity, KeynodeError, Lifetime } from 'keynode';
import { encode, newBoxPair, sealKeys } from '../../dist/protocol/index.js';
import { defer, startContainer, type TestContainer } from '../helpers/containers.js';
import { startFleet } from '../helpers/fleet-local.js';
import { rewritingProxy } from '../helpers/wire.js';

async function caught(p: Promise<unknown>): Promise<KeynodeError & { claimed?: string }> {
  try {
    await p;
  } catch (e) {
    return e as KeynodeError & { claimed?: string };
  }
  throw new Error('expected a rejection, got a value');
}

const MOVE = '0123456789abcdef0123456789abcdef';

describe('hostile moves', () => {
  let a: TestContainer;
  let b: TestContainer;
  let outsider: TestContainer;

  it('a container that is not a peer cannot import, nor be moved to; a stranger cannot move a node it does not own', async () => {
    [a, b] = (await startFleet(2)) as [TestContainer, TestContainer];
    outsider = await startContainer();
    const node = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite' }, acl: ['public'] });
    await a.client.at(node, async (ctx) => ctx.ref('v').set(1));

    const fromOutsider = await connect(a.url, { identity: outsider.operator });
    defer(() => fromOutsider.close());
    const seed = new Uint8Array(32).fill(7);
    const seeds = sealKeys([seed], await (await fromOutsider.channel()).boxKey(), newBoxPair());
    expect((await caught(fromOutsider.request('moveChunk', { move: MOVE, node: node.id, part: 0, entries: [] }))).code).toBe('ERR_NOT_PEER');
    expect((await caught(fromOutsider.request('movePrepare', { move: MOVE, node: node.id, parts: 0, records: [], seeds }))).code).toBe('ERR_NOT_PEER');
    expect((await caught(fromOutsider.request('moveActivate', { move: MOVE, node: node.id }))).code).toBe('ERR_NOT_PEER');

    expect((await caught(a.client.move(node, outsider.url))).code).toBe('ERR_NOT_PEER');
    // To where it lives already: nothing to do (a retry of a finished move ends here).
    expect(await a.client.move(node, a.url)).toMatchObject({ url: node.url, nodes: 0 });
    const stranger = await connect(a.url, { identity: Identity.generate() });
    defer(() => stranger.close());
    expect((await caught(stranger.move(node, b.url))).code).toBe('ERR_ACCESS_DENIED');
    // Still here, with its state, and still served here.
    expect(await a.client.at(node, async (ctx) => ctx.ref('v').get())).toBe(1);
    expect(a.client.urlOf(node)).toBe(node.url);
  });

  it("a peer's malformed move is refused and nothing of it is served: a key that is not the node's, an entry of another node, a record outside the tree", async () => {
    const victim = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite' } });
    const fromB = await connect(a.url, { identity: b.operator });
    defer(() => fromB.close());
    const box = await (await fromB.channel()).boxKey();
    const me = Identity.generate();
    const record = { id: me.id, parent: b.operator.id, ancestors: [b.operator.id], lifetime: { kind: 'root' }, sandbox: (await a.client.describe(victim)).sandbox, acl: [], budget: { maxNodes: 0, maxAwake: 1, memoryMB: 64, storageMB: 1 }, createdAt: Date.now() };
    const wrongKey = sealKeys([new Uint8Array(32).fill(9)], box, newBoxPair());
    expect((await caught(fromB.request('movePrepare', { move: MOVE, node: me.id, parts: 0, records: [record], seeds: wrongKey }))).code).toBe('ERR_BAD_MESSAGE');
    // An entry that writes the victim's state, smuggled in a part of a move of another node.
    const rightKey = () => sealKeys([me.exportSecretKey()], box, newBoxPair());
    await fromB.request('moveChunk', { move: MOVE, node: me.id, part: 0, entries: [['r', `${victim.id}v`, encode('pwned')]] });
    expect((await caught(fromB.request('movePrepare', { move: MOVE, node: me.id, parts: 1, records: [record], seeds: rightKey() }))).code).toBe('ERR_BAD_MESSAGE');
    // A second record whose parent is the first but whose ancestors say otherwise (it would escape its ancestors' reach).
    const other = Identity.generate();
    const orphan = { ...record, id: other.id, parent: me.id, ancestors: [Identity.generate().id, me.id] };
    const twoKeys = sealKeys([me.exportSecretKey(), other.exportSecretKey()], box, newBoxPair());
    const wrongTree = await caught(fromB.request('movePrepare', { move: MOVE, node: me.id, parts: 0, records: [record, orphan], seeds: twoKeys }));
    expect(wrongTree.code).toBe('ERR_BAD_MESSAGE');
    expect(wrongTree.message).toMatch(/not under its parent/);
    // A child listed before its parent.
    const early = await caught(fromB.request('movePrepare', { move: MOVE, node: other.id, parts: 0, records: [{ ...record, id: other.id, parent: me.id, ancestors: [b.operator.id, me.id] }, record], seeds: sealKeys([other.exportSecretKey(), me.exportSecretKey()], box, newBoxPair()) }));
    expect(early.code).toBe('ERR_BAD_MESSAGE');
    // Activating what was never prepared serves nothing.
    expect((await caught(fromB.request('moveActivate', { move: MOVE, node: me.id }))).code).toBe('ERR_NODE_NOT_FOUND');
    expect((await caught(a.client.at(`${a.url}/${me.id}`, () => 1))).code).toBe('ERR_NODE_NOT_FOUND');
    expect(await a.client.at(victim, async (ctx) => (await ctx.ref('v').get()) ?? null)).toBe(null);
  });

  it('a redirect loop ends with ERR_REDIRECT_LOOP, for a client and for a node calling through its container', async () => {
    const id = Identity.generate().id;
    const fwd = (to: TestContainer) => encode({ url: `${to.url}/${id}`, container: to.container.id, move: MOVE, at: Date.now(), ancestors: [] });
    await a.container.runtime.store.sub('m').put(id, fwd(b));
    await b.container.runtime.store.sub('m').put(id, fwd(a));
    const e = await caught(a.client.at(`${a.url}/${id}`, () => 1));
    expect(e.code).toBe('ERR_REDIRECT_LOOP');
    const caller = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any' } });
    const inner = await caught(a.client.at(caller, async (ctx, url: string) => ctx.at(url, () => 1), `${b.url}/${id}`));
    expect(inner.code).toBe('ERR_REDIRECT_LOOP');
  });

  it('a forged redirect is refused: replies are authenticated, a redirect too', async () => {
    const node = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite' } });
    for (const keepAuth of [true, false]) {
      const proxy = await rewritingProxy(a.url, (reply, _req, path) => {
        if (path !== `/${node.id}`) return reply;
        const forged = encode({ ok: false, error: { code: 'ERR_MOVED', message: 'moved', location: `${b.url}/${node.id}` } });
        const headers = { ...reply.headers };
        if (!keepAuth) delete headers['x-keynode-auth'];
        return { status: 421, headers, body: forged };
      });
      const client = await connect(proxy.url, { identity: a.operator });
      defer(() => client.close());
      const e = await caught(client.at(`${proxy.url}/${node.id}`, () => 1));
      expect(e.code).toBe('ERR_BAD_REPLY');
      expect(e.claimed).toBe('ERR_MOVED');
      expect(client.urlOf(node.id)).toBe(`${proxy.url}/${node.id}`);
    }
  });

  it('a target with no room refuses the move with ERR_BUDGET_EXHAUSTED, and the node stays where it was', async () => {
    const [x, y] = (await startFleet(2, { capacity: { maxNodes: 3, maxAwake: 10, memoryMB: 4096 } })) as [TestContainer, TestContainer];
    await y.client.spawnMany(2, { lifetime: Lifetime.root() });
    const big = await x.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite' }, budget: { maxNodes: 1 } });
    await x.client.at(big, async (ctx) => ctx.ref('v').set('stays'));
    expect((await caught(x.client.move(big, y.url))).code).toBe('ERR_BUDGET_EXHAUSTED');
    expect(await x.client.at(big, async (ctx) => ctx.ref('v').get())).toBe('stays');
    expect(x.client.urlOf(big)).toBe(big.url);
  });
});
