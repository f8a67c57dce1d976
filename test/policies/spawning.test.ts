/**
 * What a spawn costs the container, and in what order: cheap refusals before any key work, keys made on the
 * key mint's threads, the event loop free meanwhile, and no thread left behind. Real containers throughout;
 * the mint's counters are read, never replaced.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type Client } from 'keynode';
import { grantMessage, newBoxPair, openKeys, sealKeys, type SealedBox } from '../../dist/protocol/index.js';
import { Store } from '../../dist/store/index.js';
import { defer, startContainer, tempDir } from '../helpers/containers.js';
import { allNodes, failure } from './util.js';

async function newClient(url: string): Promise<Client> {
  const c = await connect(url);
  defer(() => c.close());
  return c;
}

function osThreads(): number | undefined {
  try {
    return Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  } catch {
    return undefined;
  }
}

describe('spawning: what it costs and in what order', () => {
  it('a principal without budget asking for 10,000 nodes, eight times at once, is refused before any key is made', async () => {
    const { url, container, client: op } = await startContainer();
    const mint = container.runtime.keyring.mint;
    const alice = await newClient(url);
    const refusals = await Promise.all(Array.from({ length: 8 }, () => failure(alice.spawnMany(10_000, { lifetime: Lifetime.root() }))));
    expect(refusals.map((e) => e.code)).toEqual(Array(8).fill('ERR_BUDGET_EXHAUSTED'));

    // With a grant too small, and with keys of her own and a grant to check for each node: the same.
    await op.grant(alice.here, { maxNodes: 5, maxAwake: 1, memoryMB: 64 });
    expect((await failure(alice.spawnMany(10_000, { lifetime: Lifetime.root() }))).code).toBe('ERR_BUDGET_EXHAUSTED');
    const held = alice.node(`${url}/${Identity.generate().id}`, Identity.generate().exportSecretKey());
    const withGrants = await failure(alice.spawnMany(1000, { lifetime: Lifetime.root(), sandbox: { capabilities: { c: { node: held, fn: () => 1 } } } }));
    expect(withGrants.code).toBe('ERR_BUDGET_EXHAUSTED');

    expect(mint.generated).toBe(0);
    expect(mint.threads).toBe(0);
    expect(await allNodes(op)).toEqual([]);
    await op.spawn({ lifetime: Lifetime.root() }); // and the counter does count
    expect(mint.generated).toBeGreaterThan(0);
  });

  it('the budget is checked before grants, and a spawn refused after its carve gives the budget back', async () => {
    const { url, client: op } = await startContainer();
    const alice = await newClient(url);
    await op.grant(alice.here, { maxNodes: 4, maxAwake: 1, memoryMB: 64 });
    const stranger = await op.spawn({ lifetime: Lifetime.root() }); // alice cannot sign for it
    const capability = { sandbox: { capabilities: { c: { node: stranger.id, fn: () => 1 } } } };
    expect((await failure(alice.spawnMany(5, { lifetime: Lifetime.root(), ...capability }))).code).toBe('ERR_BUDGET_EXHAUSTED');
    expect((await failure(alice.spawnMany(2, { lifetime: Lifetime.root(), ...capability }))).code).toBe('ERR_ACCESS_DENIED');
    // Concurrent spawns share a group commit: the refused one's share returns, the other commits.
    const [bad, good] = await Promise.allSettled([alice.spawnMany(2, { lifetime: Lifetime.root(), ...capability }), alice.spawnMany(2, { lifetime: Lifetime.root() })]);
    expect(bad.status === 'rejected' && (bad.reason as { code?: string }).code).toBe('ERR_ACCESS_DENIED');
    expect(good.status).toBe('fulfilled');
    expect((await alice.budget()).used.nodes).toBe(2);
    expect(await alice.spawnMany(2, { lifetime: Lifetime.root() })).toHaveLength(2);
    expect((await alice.budget()).used.nodes).toBe(4);
    expect((await failure(alice.spawn({ lifetime: Lifetime.root() }))).code).toBe('ERR_BUDGET_EXHAUSTED');
  });

  it('a batch of 10,000 is made on the mint’s threads while the event loop keeps turning and another node answers', async () => {
    const { container, client: op } = await startContainer();
    const mint = container.runtime.keyring.mint;
    const other = await op.spawn({ lifetime: Lifetime.root() });
    await op.at(other, () => 1); // awake
    await op.spawnMany(2000, { lifetime: Lifetime.root() }); // threads started, code paths compiled
    // The longest the loop went without a turn: one synchronous stretch (the container's, or this client's).
    let longestGap = 0;
    let last = performance.now();
    let ticking = true;
    const tick = () => {
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    let done = false;
    const t0 = performance.now();
    // A raw request: the client only decodes the reply, it builds no handles, so its own stretch stays short.
    const box = newBoxPair();
    const batch = op.request('spawn', { lifetime: { kind: 'root' }, count: 10_000, sealTo: box.publicKey } as never).finally(() => (done = true));
    let evals = 0;
    while (!done) {
      await op.at(other, () => 1);
      evals++;
    }
    const reply = (await batch) as { nodes: { id: string; url: string }[]; keys: SealedBox };
    const { nodes } = reply;
    const batchMs = performance.now() - t0;
    ticking = false;
    expect(new Set(nodes.map((n) => n.id)).size).toBe(10_000);
    expect(mint.generated).toBeGreaterThanOrEqual(10_000);
    expect(evals).toBeGreaterThanOrEqual(1);
    // Made and sealed on the threads, and stored a slice at a time. Before, making the keys alone held the
    // loop for 0.3 to 0.6 of the batch (measured on a loaded machine); now 0.04 to 0.1.
    expect(longestGap).toBeLessThan(batchMs / 4);
    // The nodes work: a sealed key opens to the seed the client got, and an eval runs.
    const last1 = nodes[nodes.length - 1]!;
    const rec = await container.runtime.lookup(last1.id);
    // The keys came back in one box, sealed to the key the spawn named.
    expect(container.runtime.keyring.unseal(last1.id, rec.sealedKey!)).toEqual(openKeys(reply.keys, box, nodes.length)[nodes.length - 1]);
    expect(await op.at(last1.url, () => 'here')).toBe('here');
  });

  it('a batch’s grants are signed or checked in bulk, each for its own child', async () => {
    const { client: op } = await startContainer();
    const home = await op.spawn({ lifetime: Lifetime.root() });
    await op.at(home, (ctx) => ctx.ref('address').set('1 Main St'));
    const read = (ctx: { ref(n: string): { get(): Promise<unknown> } }) => ctx.ref('address').get();
    // Signed by the container (the operator spawned home), then by the client (the handle holds home's key).
    const bySpawner = await op.spawnMany(300, { lifetime: Lifetime.root(), sandbox: { capabilities: { read: { node: home.id, fn: read } } } });
    const byClient = await op.spawnMany(300, { lifetime: Lifetime.root(), sandbox: { capabilities: { read: { node: home, fn: read } } } });
    for (const child of [bySpawner[0]!, bySpawner[299]!, byClient[0]!, byClient[299]!]) {
      expect(await op.at(child, (ctx) => ctx.caps.read())).toBe('1 Main St');
    }
    // A capability may be named like an Object.prototype member (it used to find that member and take it for a grant).
    const named = await op.spawn({ lifetime: Lifetime.root(), sandbox: { capabilities: { toString: { node: home.id, fn: read } } } });
    expect(await op.at(named, (ctx) => ctx.caps.toString())).toBe('1 Main St');
  });

  it('one forged grant in a batch refuses the whole batch, and it creates nothing', async () => {
    const { client: op } = await startContainer();
    const home = await op.spawn({ lifetime: Lifetime.root() });
    const homeKey = home.identity()!;
    const fn = '(ctx) => 1';
    const seeds = Array.from({ length: 50 }, () => Identity.generate());
    const grant = (holder: string) => homeKey.sign(grantMessage(home.id, holder, 'c', fn));
    const keys = seeds.map((s) => ({ grants: { c: grant(s.id) } }));
    keys[37]!.grants.c = grant(seeds[36]!.id); // a real grant, for another holder
    const before = (await allNodes(op)).length;
    // The chosen seeds travel sealed to the container's box key.
    const sealed = sealKeys(seeds.map((s) => s.exportSecretKey()), await (await op.channel()).boxKey(), newBoxPair());
    const body = { lifetime: { kind: 'root' }, sandbox: { capabilities: { c: { node: home.id, fn } } }, count: 50, keys, seeds: sealed };
    expect((await failure(op.request('spawn', body as never))).code).toBe('ERR_ACCESS_DENIED');
    expect((await allNodes(op)).length).toBe(before);
    keys[37]!.grants.c = grant(seeds[37]!.id);
    const { nodes } = (await op.request('spawn', body as never)) as { nodes: { id: string }[] };
    expect(nodes.map((n) => n.id)).toEqual(seeds.map((s) => s.id));
  });

  it('the mint’s threads end with the container', async () => {
    // A store's graceful close flushes LevelDB's memtable, which starts LevelDB's one background thread: it
    // lives as long as the process, whatever the mint does. Started here first, so the count below sees only the mint.
    await (await Store.open(await tempDir())).close();
    const { container, client: op } = await startContainer();
    const mint = container.runtime.keyring.mint;
    await op.spawnMany(500, { lifetime: Lifetime.root() });
    const running = mint.threads;
    expect(running).toBeGreaterThan(0);
    const before = osThreads();
    await op.close();
    await container.close();
    expect(mint.threads).toBe(0);
    if (before !== undefined) expect(osThreads()!).toBeLessThanOrEqual(before - running);
  });
});
