/**
 * Three containers as one fleet (test/helpers/fleet.ts: each in its own network namespace where this runs as
 * root, else on loopback ports): membership and loads, calls between all three, placement.
 */
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type Client, type Ctx, type KeynodeError, type LoadReport } from 'keynode';
import { startFleet, type TestFleet } from '../helpers/fleet.js';
import { until } from '../helpers/containers.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const GRANT = { maxNodes: 2500, maxAwake: 50, memoryMB: 4096 };

let fleet: TestFleet;
let operators: Client[] = [];
const tenant = Identity.generate();
let client: Client;

function originOf(url: string): string {
  return new URL(url).origin;
}

function tally(urls: string[]): Map<string, number> {
  const by = new Map<string, number>();
  for (const u of urls) by.set(originOf(u), (by.get(originOf(u)) ?? 0) + 1);
  return by;
}

beforeAll(async () => {
  // In netns mode the members find each other through one DNS name, as pods of a headless Service do.
  fleet = await startFleet({ dns: true, flags: ['--fleet-refresh-ms', '300'] });
  operators = await Promise.all(fleet.members.map((m) => connect(m.url, { identity: m.operator })));
  for (const op of operators) await op.grant(tenant, GRANT);
  client = await connect(fleet.members.map((m) => m.url), { identity: tenant, loadMaxAgeMs: 200 });
}, 120_000);

afterAll(async () => {
  await client?.close();
  await Promise.all(operators.map((o) => o.close()));
});

describe(`fleet of three containers`, () => {
  it('members find each other (by DNS name in netns mode), pin their IDs and report authenticated loads', async () => {
    const ids = fleet.members.map((m) => m.operator.id);
    await until(async () => (await operators[0]!.load()).members.filter((m) => m.state === 'up').length === 2, 30_000, 'member 0 to see both peers up');
    const report: LoadReport = await operators[0]!.load();
    expect(report.containerId).toBe(ids[0]);
    expect(report.url).toBe(fleet.members[0]!.url);
    expect(new Set(report.members.map((m) => m.url))).toEqual(new Set([fleet.members[1]!.url, fleet.members[2]!.url]));
    for (const m of report.members) {
      expect(m.containerId).toBe(ids[fleet.members.findIndex((x) => x.url === m.url)]);
      expect(m.load!.maxAwake).toBeGreaterThan(0);
      if (fleet.mode === 'netns') expect(m.via).toBe(fleet.dnsPeers);
    }
    // The operator has the whole capacity as its room; a tenant sees its grant.
    expect(report.room!.maxNodes).toBeGreaterThan(1_000_000);
    expect((await client.load(fleet.members[1]!.url)).room).toMatchObject({ maxNodes: GRANT.maxNodes, maxAwake: GRANT.maxAwake });

    // The operator's view: `keynode peers`, for people and as JSON; and /metrics.
    const env = { KEYNODE_URL: fleet.members[0]!.url, KEYNODE_IDENTITY: `${fleet.members[0]!.data}/operator.key` };
    const json = await execa(process.execPath, [CLI, 'peers', '--json'], { env, reject: false });
    expect(json.exitCode, json.stderr).toBe(0);
    const listed = JSON.parse(json.stdout) as { self: { url: string }; members: { url: string; state: string }[] };
    expect(listed.self.url).toBe(fleet.members[0]!.url);
    expect(listed.members.map((m) => m.state)).toEqual(['up', 'up']);
    const text = await execa(process.execPath, [CLI, 'peers'], { env, reject: false });
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toContain(fleet.members[1]!.url);
    const metrics = await (await fetch(`${fleet.members[0]!.url}/metrics`)).text();
    expect(metrics).toMatch(/keynode_fleet_members\{state="up"\} 2/);
    expect(metrics).toContain(`keynode_peer_up{peer="${fleet.members[2]!.url}"} 1`);
  });

  it('nodes on all three containers call each other (ctx.at) and through a capability bound on another container, by URL and by fleet URL', async () => {
    const nodes = await Promise.all(fleet.members.map((m) => client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any' }, acl: ['public'], placement: { on: m.url } })));
    expect(nodes.map((n) => originOf(n.url))).toEqual(fleet.members.map((m) => m.url));
    await Promise.all(nodes.map((n, i) => client.at(n, (ctx, name: string) => ctx.ref('name').set(name), `node ${i}`)));
    // Each node calls the next, which calls the one after: a ring over all three containers.
    const ring = await client.at(
      nodes[0]!,
      (ctx, b: string, c: string) => ctx.at(b, (ctx2, c2: string) => ctx2.at(c2, async (ctx3) => [ctx3.caller, await ctx3.ref('name').get()]), c),
      nodes[1]!.url,
      nodes[2]!.url,
    );
    expect(ring).toEqual([nodes[1]!.id, 'node 2']);

    const guest = await client.spawn({
      lifetime: Lifetime.root(),
      sandbox: { capabilities: { nameOf: { node: nodes[0]!, fn: async (ctx: Ctx) => `${String(await ctx.ref('name').get())} read for ${ctx.caller}` } } },
      placement: { on: fleet.members[2]!.url },
    });
    expect(await client.at(guest, (ctx) => ctx.caps.nameOf())).toBe(`node 0 read for ${guest.id}`);

    // The same by fleet URLs: each node named through a member it does not live on, which redirects (the
    // capability's grant is signed by this client, which holds node 0's key, as for any bound node).
    const fleetUrl = (i: number) => `${fleet.members[(i + 1) % 3]!.url}/${nodes[i]!.id}`;
    const viaFleet = await client.at(
      nodes[0]!,
      (ctx, b: string, c: string) => ctx.at(b, (ctx2, c2: string) => ctx2.at(c2, async (ctx3) => [ctx3.caller, await ctx3.ref('name').get()]), c),
      fleetUrl(1),
      fleetUrl(2),
    );
    expect(viaFleet).toEqual([nodes[1]!.id, 'node 2']);
    const fleetGuest = await client.spawn({
      lifetime: Lifetime.root(),
      sandbox: { capabilities: { nameOf: { node: client.node(fleetUrl(0), nodes[0]!.exportSecretKey()), fn: async (ctx: Ctx) => `${String(await ctx.ref('name').get())} read for ${ctx.caller}` } } },
      placement: { on: fleet.members[2]!.url },
    });
    expect(await client.at(fleetGuest, (ctx) => ctx.caps.nameOf())).toBe(`node 0 read for ${fleetGuest.id}`);
  });

  it('`near` places a node on its neighbour\'s container, `on` on the named one', async () => {
    for (const m of fleet.members) {
      const parent = await client.spawn({ lifetime: Lifetime.root(), placement: { on: m.url } });
      const children = await client.spawnMany(5, { lifetime: Lifetime.root(), placement: { near: parent } });
      expect(children.map((c) => originOf(c.url))).toEqual(Array(5).fill(m.url));
      const byUrl = await client.spawn({ lifetime: Lifetime.root(), placement: { near: parent.url } });
      expect(originOf(byUrl.url)).toBe(m.url);
    }
    const bad = (await client.spawn({ lifetime: Lifetime.root(), placement: { on: 'ftp://nowhere' } }).catch((e: unknown) => e)) as KeynodeError;
    expect(bad.code).toBe('ERR_BAD_URL');
  });

  it('a node\'s children are spawned next to it (ctx.spawn), whichever container it is on; a Linked child elsewhere is refused', async () => {
    for (const [i, m] of fleet.members.entries()) {
      const parent = await client.spawn({ lifetime: Lifetime.root(), sandbox: { spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 4 }, placement: { on: m.url } });
      const urls = await client.at(parent, async (ctx, here: string) => [
        (await ctx.spawn({ lifetime: ctx.Lifetime.linked() })).url,
        (await ctx.spawn({ lifetime: ctx.Lifetime.linked(), placement: { near: ctx.here } })).url,
        (await ctx.spawn({ lifetime: ctx.Lifetime.linked(), placement: { on: here } })).url,
      ], m.url);
      expect(urls.map(originOf)).toEqual([m.url, m.url, m.url]);
      const other = fleet.members[(i + 1) % 3]!.url;
      const err = (await client.at(parent, (ctx, there: string) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), placement: { on: there } }), other).catch((e: unknown) => e)) as KeynodeError;
      expect(err.code).toBe('ERR_BAD_POLICY');
      expect(err.message).toContain(other);
      expect(err.message).toContain('a linked child');
    }
  });

  it('placement spreads 3,000 single spawns (32 in flight) and one spawnMany within 10% of even', async () => {
    const before = await Promise.all(fleet.members.map((m) => client.load(m.url)));
    const urls: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < 3000) {
          next++;
          urls.push((await client.spawn({ lifetime: Lifetime.root() })).url);
        }
      }),
    );
    const by = tally(urls);
    // Even means even over all the tenant's nodes: the earlier tests left a few on each.
    const totals = fleet.members.map((m, i) => (by.get(m.url) ?? 0) + before[i]!.room!.nodes);
    const mean = totals.reduce((a, b) => a + b, 0) / totals.length;
    for (const t of totals) expect(Math.abs(t - mean) / mean, `spread ${totals.join(' / ')}`).toBeLessThan(0.1);

    const many = await client.spawnMany(600, { lifetime: Lifetime.ephemeral() });
    const counts = [...tally(many.map((h) => h.url)).values()];
    expect(counts.length).toBe(3);
    for (const c of counts) expect(Math.abs(c - 200) / 200, `spawnMany spread ${counts.join(' / ')}`).toBeLessThan(0.1);
  }, 240_000);

  it('a member that goes down is skipped; with no room anywhere the error says so', async () => {
    const down = fleet.members[2]!;
    await down.kill9();
    try {
      const urls = (await client.spawnMany(30, { lifetime: Lifetime.ephemeral() })).map((h) => originOf(h.url));
      expect(urls).not.toContain(down.url);
      expect(new Set(urls).size).toBe(2);
      // The others saw it go.
      await until(async () => (await operators[0]!.load()).members.find((m) => m.url === down.url)?.state === 'down', 20_000, 'member 0 to mark the dead peer down');
      // Room left on the two that answer, and no more.
      const left = (await Promise.all(fleet.members.slice(0, 2).map((m) => client.load(m.url)))).reduce((n, r) => n + r.room!.maxNodes - r.room!.nodes, 0);
      const full = (await client.spawnMany(left + 1, { lifetime: Lifetime.ephemeral() }).catch((e: unknown) => e)) as KeynodeError;
      expect(full.code).toBe('ERR_BUDGET_EXHAUSTED');
      expect(full.message).toContain('no member of the fleet has room');
      expect(full.message).toContain(down.url);
    } finally {
      await fleet.restart(2);
    }
  }, 120_000);

  it('a member replaced by another container at its URL is refused by the others, with a log line and a metric', async () => {
    const replaced = fleet.members[1]!;
    const before = replaced.operator.id;
    await replaced.kill9();
    await fleet.restart(1, { freshData: true });
    const after = fleet.members[1]!.operator.id;
    expect(after).not.toBe(before);
    await until(async () => (await operators[0]!.load()).members.find((m) => m.url === replaced.url)?.state === 'refused', 30_000, 'the new ID refused');
    const view = (await operators[0]!.load()).members.find((m) => m.url === replaced.url)!;
    expect(view.error).toContain(after);
    expect(fleet.members[0]!.logs()).toContain('another container ID than the one pinned');
    const metrics = await (await fetch(`${fleet.members[0]!.url}/metrics`)).text();
    expect(metrics).toContain(`keynode_peer_identity_refusals_total{peer="${replaced.url}"} 1`);
    // A fleet client that already knew the member refuses the new one too (its session is pinned to the old ID).
    const err = (await client.load(replaced.url).catch((e: unknown) => e)) as KeynodeError;
    // (ERR_BAD_REPLY when its session's replies fail to verify; ERR_ACCESS_DENIED when a new hello, signed for the old ID, is refused.)
    expect(['ERR_BAD_REPLY', 'ERR_ACCESS_DENIED']).toContain(err.code);
  }, 120_000);
});
