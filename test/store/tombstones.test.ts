import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, Lifetime, type KeynodeError } from 'keynode';
import { encode } from '../../dist/protocol/index.js';
import { Store, TombstoneExpiry } from '../../dist/store/index.js';
import type { NodeRecord } from '../../dist/store/records.js';
import { startContainer, until } from '../helpers/containers.js';

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

const opened: { store: Store; dir: string }[] = [];
async function open(): Promise<Store> {
  const dir = await mkdtemp(join(tmpdir(), 'keynode-tombstones-'));
  const store = await Store.open(dir);
  opened.push({ store, dir });
  return store;
}
afterEach(async () => {
  for (const { store, dir } of opened.splice(0)) {
    await store.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
});

async function count(store: Store, sub: 'o' | 't'): Promise<number> {
  let n = 0;
  for await (const _ of store.sub(sub).keys()) n++;
  return n;
}

/** Tombstones as a store written before tombstones had keys by time holds them: `t` entries only. */
async function oldTombstones(store: Store, at: (i: number) => number, n: number, first = 0): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => ID(first + i));
  const t = store.txn();
  ids.forEach((id, i) => t.put('t', id, encode({ destroyedAt: at(i), reason: 'old' })));
  await t.commit();
  return ids;
}

describe('tombstones expire (store/tombstones)', () => {
  it('a destroyed node leaves a tombstone with a key by time; expiring removes both, and the ID is unknown', async () => {
    const store = await open();
    const ids = [ID(1), ID(2), ID(3)];
    for (const id of ids) await store.txn().putNode(record(id)).commit();
    for (const id of ids) await store.destroyNode(record(id), 'test');
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

  it("a sweep removes only what is older than the time to live, in batches, and an older store's tombstones are indexed once", async () => {
    const store = await open();
    // 2,500 old ones (more than one batch) at t=1000..3499, and 10 recent ones at t=10,000.
    const old = await oldTombstones(store, (i) => 1000 + i, 2500);
    const recent = await oldTombstones(store, () => 10_000, 10, 5000);
    expect(await count(store, 'o')).toBe(0);
    expect(await store.indexTombstones()).toBe(2510);
    expect(await store.indexTombstones()).toBe(0); // once per store
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
    expect(await count(store, 'o')).toBe(11); // the ten and the marker that the store is indexed
    await expiry.close();
  });

  it('a tombstone whose value is not one (a damaged store) is indexed as expired, not a reason to stop', async () => {
    const store = await open();
    const [good] = await oldTombstones(store, () => Date.now(), 1);
    await store.txn().put('t', ID(9), new Uint8Array([0xc1])).put('t', ID(10), encode({ reason: 'no time' })).commit();
    expect(await store.indexTombstones()).toBe(3);
    expect(await new TombstoneExpiry(store, 60_000, () => {}).sweep()).toBe(2);
    expect(await store.getTombstone(good!)).toBeDefined();
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

  it('the option is checked like every other', async () => {
    await expect(startContainer({ tombstoneTtlMs: 0 })).rejects.toMatchObject({ code: 'ERR_BAD_POLICY' });
  });
});
