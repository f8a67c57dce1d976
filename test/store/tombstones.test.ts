import { describe, expect, it } from 'vitest';
import { connect, Lifetime, type KeynodeError } from 'keynode';
import { encode } from '../../dist/protocol/index.js';
import { Store, TombstoneExpiry, tombstoneKey } from '../../dist/store/index.js';
import type { NodeRecord } from '../../dist/store/records.js';
import { defer, startContainer, tempDir, until } from '../helpers/containers.js';

const ID = (n: number): string => String(n).padStart(52, '0').replace(/\d/g, (d) => 'abcdefghij'[Number(d)]!);

function record(id: string): NodeRecord {
  return {
    id,
    parent: 'p'.repeat(52),
    ancestors: ['p'.repeat(52)],
    lifetime: { kind: 'root' },
    sandbox: { refs: 'readwrite', spawn: false, contacts: [], capabilities: {}, memoryMB: 64, timeoutMs: 5000, maxMessageBytes: 1 << 20, log: true },
    acl: ['public'],
    budget: { maxNodes: 0, maxAwake: 10, memoryMB: 640 },
    createdAt: 1_700_000_000_000,
  } as NodeRecord;
}

async function open(): Promise<Store> {
  const store = await Store.open(await tempDir('keynode-tombstones-'));
  defer(() => store.close());
  return store;
}

async function count(store: Store, sub: 'o' | 't'): Promise<number> {
  let n = 0;
  for await (const _ of store.sub(sub).keys()) n++;
  return n;
}

/** Expiring tombstones written at chosen times, as `destroyNode(..., true)` writes them at the present one. */
async function tombstonesAt(store: Store, at: (i: number) => number, n: number, first = 0): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => ID(first + i));
  const t = store.txn();
  ids.forEach((id, i) => t.put('t', id, encode({ destroyedAt: at(i), reason: 'test' })).put('o', tombstoneKey(at(i), id), new Uint8Array(0)));
  await t.commit();
  return ids;
}

describe('tombstones expire (store/tombstones)', () => {
  it('a destroyed node that may expire leaves a tombstone with a key by time; expiring removes both, and the ID is unknown', async () => {
    const store = await open();
    const ids = [ID(1), ID(2), ID(3)];
    for (const id of ids) await store.txn().putNode(record(id)).commit();
    for (const id of ids) await store.destroyNode(record(id), 'test', undefined, true);
    expect(await count(store, 't')).toBe(3);
    expect(await count(store, 'o')).toBe(3);
    for (const id of ids) expect(await store.knows(id)).toBe(true);

    // Written just now: nothing is older than a moment ago.
    expect(await store.expireTombstones(Date.now() - 60_000, 10)).toBe(0);
    expect(await store.expireTombstones(Date.now() + 1, 2)).toBe(2);
    expect(await store.expireTombstones(Date.now() + 1, 2)).toBe(1);
    expect(await count(store, 't')).toBe(0);
    expect(await count(store, 'o')).toBe(0);
    for (const id of ids) {
      expect(await store.getTombstone(id)).toBeUndefined();
      expect(await store.knows(id)).toBe(false);
    }
  });

  it('a tombstone not marked to expire (a node that left descendants here) is never swept', async () => {
    const store = await open();
    const [kept, gone] = [ID(7), ID(8)];
    for (const id of [kept, gone]) await store.txn().putNode(record(id)).commit();
    await store.destroyNode(record(kept), 'test');
    await store.destroyNode(record(gone), 'test', undefined, true);
    const expiry = new TombstoneExpiry(store, 1000, (e) => {
      throw e;
    });
    expect(await expiry.sweep(Date.now() + 10 * 365 * 86_400_000)).toBe(1);
    expect(await store.getTombstone(kept)).toBeDefined();
    expect(await store.getTombstone(gone)).toBeUndefined();
  });

  it('a sweep removes only what is older than the time to live, in batches', async () => {
    const store = await open();
    // 2,500 at t=1000..3499 (more than one batch), and 10 recent ones at t=10,000.
    const old = await tombstonesAt(store, (i) => 1000 + i, 2500);
    const recent = await tombstonesAt(store, () => 10_000, 10, 5000);
    const expiry = new TombstoneExpiry(store, 5000, (e) => {
      throw e;
    });
    expect(await expiry.sweep(5000 + 2000)).toBe(1000); // destroyed before 2000
    expect(await store.getTombstone(old[999]!)).toBeUndefined();
    expect(await store.getTombstone(old[1000]!)).toBeDefined();
    expect(await expiry.sweep(5000 + 9_999)).toBe(1500);
    expect(expiry.expired).toBe(2500);
    for (const id of recent) expect((await store.getTombstone(id))?.destroyedAt).toBe(10_000);
    expect(await count(store, 't')).toBe(10);
    expect(await count(store, 'o')).toBe(10);
    await expiry.close();
    expect(await expiry.sweep(1e15)).toBe(0); // closed: sweeps nothing more
  });

  it('in a container: ERR_NODE_DESTROYED for the time to live, then ERR_NODE_NOT_FOUND', async () => {
    const { client } = await startContainer({ tombstoneTtlMs: 400 });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(node, () => 1);
    await client.destroy(node);
    const code = (p: Promise<unknown>): Promise<string | undefined> => p.then(() => undefined, (e: KeynodeError) => e.code);
    expect(await code(client.at(node, () => 1))).toBe('ERR_NODE_DESTROYED');
    await until(async () => (await code(client.describe(node.id))) === 'ERR_NODE_NOT_FOUND', 10_000, 'the tombstone to expire');
    expect(await code(client.at(node, () => 1))).toBe('ERR_NODE_NOT_FOUND');
    const stranger = await connect(node.url.slice(0, node.url.lastIndexOf('/')));
    expect(await code(stranger.at(node, () => 1))).toBe('ERR_NODE_NOT_FOUND');
    await stranger.close();
  });

  it('a node that ever spawned keeps its tombstone (a child of it may live on, here or elsewhere); a childless one loses its own', async () => {
    const { client } = await startContainer({ tombstoneTtlMs: 300 });
    const options = { lifetime: Lifetime.root(), budget: { maxNodes: 2 }, sandbox: { spawn: { lifetimes: ['root' as const] } } };
    const [parent, bereaved] = [await client.spawn(options), await client.spawn(options)];
    const child = await client.at(parent, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.root() }));
    await client.destroy(await client.at(bereaved, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.root() })));
    const leaf = await client.spawn({ lifetime: Lifetime.root() });
    await client.destroy(parent);
    await client.destroy(bereaved);
    await client.destroy(leaf);
    const code = (p: Promise<unknown>): Promise<string | undefined> => p.then(() => undefined, (e: KeynodeError) => e.code);
    await until(async () => (await code(client.describe(leaf.id))) === 'ERR_NODE_NOT_FOUND', 10_000, 'the leaf tombstone to expire');
    // Both were destroyed before the leaf: had their tombstones been swept, they would have gone with its.
    expect(await code(client.describe(parent.id))).toBe('ERR_NODE_DESTROYED');
    expect(await code(client.describe(bereaved.id))).toBe('ERR_NODE_DESTROYED');
    expect((await client.describe(child.id)).parent).toBe(parent.id);
  });

  it('the option is checked like every other', async () => {
    await expect(startContainer({ tombstoneTtlMs: 0 })).rejects.toMatchObject({ code: 'ERR_BAD_POLICY' });
  });
});
