import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Store } from '../../dist/store/index.js';
import type { NodeRecord } from '../../dist/store/records.js';

const ID = (c: string) => c.repeat(52);

function record(id: string): NodeRecord {
  return {
    id,
    parent: ID('p'),
    ancestors: [ID('p')],
    lifetime: { kind: 'root' },
    sandbox: { refs: 'readwrite', spawn: false, contacts: [], capabilities: {}, memoryMB: 64, timeoutMs: 5000, maxMessageBytes: 1 << 20, log: true },
    acl: ['public'],
    budget: { maxNodes: 0, maxAwake: 10, memoryMB: 640 },
    createdAt: 1_700_000_000_000,
    sealedKey: new Uint8Array(60).fill(7),
  } as NodeRecord;
}

const opened: { store: Store; dir: string }[] = [];
async function open(): Promise<Store> {
  const dir = await mkdtemp(join(tmpdir(), 'keynode-absent-'));
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

describe('IDs known not to be here (store/absent)', () => {
  it('a node written after its ID was read absent is found at once, by knows and by getNode', async () => {
    const store = await open();
    const id = ID('a');
    expect(await store.knows(id)).toBe(false);
    expect(await store.knows(id)).toBe(false); // remembered
    await store.txn().putNode(record(id)).commit();
    expect(await store.knows(id)).toBe(true);
    expect((await store.getNode(id))?.id).toBe(id);
  });

  it('a tombstone counts as known (a destroyed node lived here)', async () => {
    const store = await open();
    const id = ID('b');
    expect(await store.knows(id)).toBe(false);
    await store.txn().putNode(record(id)).commit();
    await store.destroyNode(record(id), 'test');
    expect(await store.getNode(id)).toBeUndefined();
    expect(await store.knows(id)).toBe(true);
    expect(await store.getTombstone(id)).toBeDefined();
  });

  it('an absence read while the node is being written is not remembered', async () => {
    const store = await open();
    for (let i = 0; i < 50; i++) {
      const id = `${'c'.repeat(50)}${String(i).padStart(2, 'a').replace(/\d/g, (d) => 'abcdefghij'[Number(d)]!)}`;
      const reads = [store.knows(id), store.knows(id)];
      const write = store.txn().putNode(record(id)).commit();
      reads.push(store.knows(id));
      await Promise.all([...reads, write]);
      expect(await store.knows(id), `node ${i}`).toBe(true);
      expect((await store.getNode(id))?.id).toBe(id);
    }
  });

  it('stays bounded: a flood of made-up IDs leaves each still answered right', async () => {
    const store = await open();
    const known = ID('d');
    await store.txn().putNode(record(known)).commit();
    for (let i = 0; i < 12_000; i++) expect(await store.knows(i.toString(32).padStart(52, 'e'))).toBe(false);
    expect(await store.knows(known)).toBe(true);
    expect(await store.knows(ID('e'))).toBe(false);
  });
});
