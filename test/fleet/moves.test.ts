/**
 * Moves and drains across the fleet harness (test/helpers/fleet.ts): three `keynode start` processes, each in
 * its own network namespace where this runs as root (else on loopback ports), finding each other by one DNS
 * name as pods of a headless Service do. test/migration covers the same ground in depth in one process; this
 * proves it across real hosts, with peers known only through membership.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type Client } from 'keynode';
import { startFleet, type TestFleet } from '../helpers/fleet.js';
import { until } from '../helpers/containers.js';
import { exactlyOnceWrite as WRITE } from '../helpers/writes.js';

let fleet: TestFleet;
let operators: Client[] = [];
const clients: Client[] = [];

async function client(url: string | string[], identity: Identity): Promise<Client> {
  const c = await connect(url, { identity });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  fleet = await startFleet({ dns: true, flags: ['--fleet-refresh-ms', '300'] });
  operators = await Promise.all(fleet.members.map((m) => client(m.url, m.operator)));
  // With dns: peers, a member moves and looks up only through the members membership has checked.
  for (const op of operators) await until(async () => (await op.load()).members.filter((m) => m.state === 'up').length === 2, 30_000, 'every member to see both peers up');
}, 120_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
});

describe(`moves across the fleet harness`, () => {
  it('a node moves between hosts while 20 clients write: every acknowledged write once; the old URL and a fleet URL through the third host answer', async () => {
    const [a, b, c] = fleet.members as [TestFleet['members'][0], TestFleet['members'][0], TestFleet['members'][0]];
    const [opA] = operators as [Client];
    const node = await opA.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite', timeoutMs: 10_000 }, acl: ['public'] });
    const oldUrl = node.url;
    const writers = await Promise.all(Array.from({ length: 20 }, () => client(a.url, Identity.generate())));
    const acked: string[] = [];
    const failed: unknown[] = [];
    let firstAck!: () => void;
    const started = new Promise<void>((resolve) => (firstAck = resolve));
    const work = writers.map(async (w, wi) => {
      for (let i = 0; i < 10; i++) {
        try {
          await w.at(oldUrl, WRITE, wi, i);
          acked.push(`${wi}:${i}`);
          if (acked.length === 20) firstAck();
        } catch (e) {
          failed.push(e);
        }
      }
    });
    await started;
    const moved = await opA.move(node, b.url);
    await Promise.all(work);
    expect(failed).toEqual([]);
    expect(moved.url).toBe(`${b.url}/${node.id}`);
    expect(acked.length).toBe(200);

    const direct = await client(b.url, a.operator);
    const seen = await direct.at(`${b.url}/${node.id}`, async (ctx) => ({
      keys: (await ctx.index('writes').entries({ limit: 1000 })).map(([k]: [string]) => k),
      count: await ctx.ref('count').get(),
      here: ctx.here,
    }));
    expect(new Set(seen.keys)).toEqual(new Set(acked));
    expect(seen.keys.length).toBe(200);
    expect(seen.count).toBe(200);
    expect(seen.here.id).toBe(node.id);

    // A client that never heard of the move, through the old URL; and a fleet URL through C, which never had it.
    const stranger = await client(a.url, a.operator);
    expect(await stranger.at(oldUrl, async (ctx) => ctx.ref('count').get())).toBe(200);
    const viaC = await client(c.url, a.operator);
    expect(await viaC.at(`${c.url}/${node.id}`, async (ctx) => ctx.ref('count').get())).toBe(200);
    expect(viaC.urlOf(node.id)).toBe(`${b.url}/${node.id}`);

    // A node on A calls it (ctx.at) by a fleet URL through C, its listed contact: A's container follows C's
    // authenticated redirect to B, where the same node ID lives now.
    const caller = await opA.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [`${c.url}/${node.id}`] } });
    const count = await opA.at(caller, async (ctx, url: string) => ctx.at(url, async (t: any) => t.ref('count').get()), `${c.url}/${node.id}`);
    expect(count).toBe(200);
  }, 180_000);

  it('drains a host to the other two; once it is stopped, each node answers at a fleet URL', async () => {
    const [a, b, c] = fleet.members as [TestFleet['members'][0], TestFleet['members'][0], TestFleet['members'][0]];
    const opC = operators[2]!;
    const nodes = await opC.spawnMany(12, { lifetime: Lifetime.root(), sandbox: { refs: 'readwrite' } });
    for (const [i, n] of nodes.entries()) await opC.at(n, async (ctx, i: number) => ctx.ref('v').set(`node ${i}`), i);
    const report = await opC.drain({ concurrency: 4 });
    expect(report.failed).toEqual([]);
    expect(report.nodes).toBe(12);
    expect((report.peers[a.url] ?? 0) + (report.peers[b.url] ?? 0)).toBe(12);
    await c.stop();
    const viaA = await client(a.url, c.operator);
    const viaB = await client(b.url, c.operator);
    for (const [i, n] of nodes.entries()) {
      const via = i % 2 ? viaA : viaB;
      const origin = i % 2 ? a.url : b.url;
      expect(await via.at(`${origin}/${n.id}`, async (ctx) => ctx.ref('v').get())).toBe(`node ${i}`);
    }
  }, 180_000);
});
