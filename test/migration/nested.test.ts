/**
 * One move per node at a time: while a node's move is held at a phase (KEYNODE_TEST_MOVE_PAUSE, read when
 * the containers of this file start), a second move of it, or of a node under it, is refused; and a peer's
 * move that smuggles a grant's limits into a budget record is refused.
 */
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime } from 'keynode';
import { encode, newBoxPair, sealKeys } from '../../dist/protocol/index.js';
import { defer, until, type TestContainer } from '../helpers/containers.js';
import { startFleet } from '../helpers/fleet-local.js';
import { failure as caught } from '../policies/util.js';

describe('moves that overlap', () => {
  it('a node whose move is under way, or a node under it, cannot be moved again meanwhile', async () => {
    process.env.KEYNODE_TEST_MOVE_PAUSE = 'prepared';
    let a: TestContainer;
    let b: TestContainer;
    try {
      [a, b] = (await startFleet(2)) as [TestContainer, TestContainer];
    } finally {
      delete process.env.KEYNODE_TEST_MOVE_PAUSE;
    }
    const parent = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite', spawn: { lifetimes: ['linked'] }, timeoutMs: 10_000 }, budget: { maxNodes: 1 } });
    const kid = await a.client.at(parent, async (ctx) => (await ctx.spawn({ lifetime: ctx.Lifetime.linked() })).url as string);
    // Held at 'prepared' for good: the move neither finishes nor fails while this test runs. Its client is
    // never closed (a close would wait for the reply); the container's close at the end cuts it off.
    const mover = await connect(a.url, { identity: a.operator });
    void mover.move(parent, b.url).catch(() => {});
    const kidId = kid.split('/').pop()!;
    await until(() => a.container.runtime.holds.has(kidId), 20_000, 'the move to hold the child');
    expect((await caught(a.client.move(parent, b.url))).code).toBe('ERR_NOT_MOVABLE');
    expect((await caught(a.client.move(kid, b.url))).code).toBe('ERR_NOT_MOVABLE');
  });

  it("a peer's budget record that carries a grant's limits is refused", async () => {
    const [x, y] = (await startFleet(2)) as [TestContainer, TestContainer];
    const fromY = await connect(x.url, { identity: y.operator });
    defer(() => fromY.close());
    const box = await (await fromY.channel()).boxKey();
    const me = Identity.generate();
    const sandbox = (await x.client.describe(await x.client.spawn({ lifetime: Lifetime.root() }))).sandbox;
    const record = { id: me.id, parent: y.operator.id, ancestors: [y.operator.id], lifetime: { kind: 'root' }, sandbox, acl: [], budget: { maxNodes: 0, maxAwake: 1, memoryMB: 64, storageMB: 1 }, createdAt: Date.now() };
    const move = 'fedcba9876543210fedcba9876543210';
    await fromY.request('moveChunk', { move, node: me.id, part: 0, entries: [['b', me.id, encode({ usedNodes: 0, limits: { maxNodes: 1e9, maxAwake: 1e9, memoryMB: 1e9 } })]] });
    const e = await caught(fromY.request('movePrepare', { move, node: me.id, parts: 1, records: [record], seeds: sealKeys([me.exportSecretKey()], box, newBoxPair()) }));
    expect(e.code).toBe('ERR_BAD_MESSAGE');
  });
});
