/**
 * @module bench/fleet
 * Three containers as a fleet (bench/fleet-net.ts: each in its own network namespace when this runs as
 * root, else on loopback ports): what a `ctx.at` to a node on another member adds to its caller's eval,
 * and how fast a fleet client places spawns (single calls with 32 in flight, and `spawnMany`).
 */
import { join } from 'node:path';
import { connect, Identity, Lifetime, type Client } from '../index.js';
import { dataDir, log, notes, onCleanup, QUICK, row, RUNS } from './harness.js';
import { fleetHosts, launchMember } from './fleet-net.js';
import { percentile, pooled, target } from './stats.js';

const SIZE = {
  atSamples: QUICK ? 300 : 1000,
  atWarmup: QUICK ? 100 : 300,
  spawns: QUICK ? 1500 : 3000,
};

export async function benchFleet(): Promise<void> {
  const { mode, why, net, hosts } = await fleetHosts(3);
  if (net) onCleanup(async () => net.remove());
  log(`fleet (${mode} mode: ${why})`);
  notes.push(`fleet: ${mode === 'netns' ? 'three containers in their own network namespaces, over veth pairs and a bridge' : `three containers on loopback ports (${why})`}`);
  const urls = hosts.map((h) => `http://${h.host}:${h.port}`);
  const datas = await Promise.all(hosts.map((_, i) => dataDir(`fleet-${i}`)));
  const members = await Promise.all(
    hosts.map((h, i) => launchMember({ ...(net ? { ns: net.namespaces[i]! } : {}), ...h, data: datas[i]!, peers: urls.filter((_, j) => j !== i), flags: ['--idle-timeout-ms', '600000'] })),
  );
  for (const m of members) onCleanup(() => m.kill('SIGKILL'));
  const operators = await Promise.all(datas.map(async (d, i) => connect(urls[i]!, { identity: await Identity.load(join(d, 'operator.key')) })));
  for (const o of operators) onCleanup(() => o.close());
  const tenant = Identity.generate();
  for (const o of operators) await o.grant(tenant, { maxNodes: 100 * SIZE.spawns, maxAwake: 16, memoryMB: 2048 });
  const client = await connect(urls, { identity: tenant, connections: 32 });
  onCleanup(() => client.close());
  await crossAt(client, urls, mode);
  await placement(client);
}

/** As bench/eval.ts measures ctx.at: nested and plain evals alternate on one caller, and the p50s differ by what the call added. */
async function crossAt(client: Client, urls: string[], mode: string): Promise<void> {
  const caller = await client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any' }, placement: { on: urls[0]! } });
  const callee = await client.spawn({ lifetime: Lifetime.root(), acl: [caller.url], placement: { on: urls[1]! } });
  const nested = () => client.at(caller, (ctx, t: string) => ctx.at(t, () => 1), callee.url);
  const plain = () => client.at(caller, () => 1);
  for (let i = 0; i < SIZE.atWarmup; i++) await nested();
  const added: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const withAt: number[] = [];
    const without: number[] = [];
    for (let i = 0; i < SIZE.atSamples / 2; i++) {
      let t0 = performance.now();
      await nested();
      withAt.push(performance.now() - t0);
      t0 = performance.now();
      await plain();
      without.push(performance.now() - t0);
    }
    added.push(percentile(withAt, 50) - percentile(without, 50));
  }
  const where = mode === 'netns' ? 'across network namespaces' : 'across loopback ports';
  row(`fleet: ctx.at to another member, p50 added to the caller's eval (${where})`, 'ms', added, target('ctxAtRemote'));
}

async function placement(client: Client): Promise<void> {
  const single: number[] = [];
  const many: number[] = [];
  const spread: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    let t0 = performance.now();
    const urls: string[] = [];
    await pooled(SIZE.spawns, 32, async () => urls.push((await client.spawn({ lifetime: Lifetime.root() })).url));
    single.push(SIZE.spawns / ((performance.now() - t0) / 1000));
    const counts = [...tally(urls).values()];
    spread.push((100 * (Math.max(...counts) - Math.min(...counts))) / (SIZE.spawns / 3));
    t0 = performance.now();
    await client.spawnMany(SIZE.spawns, { lifetime: Lifetime.root() });
    many.push(SIZE.spawns / ((performance.now() - t0) / 1000));
  }
  row('fleet: placed spawns, single calls over 3 members (32 in flight)', 'nodes/s', single);
  row('fleet: placed spawnMany over 3 members', 'nodes/s', many);
  row(`fleet: spread of ${SIZE.spawns} placed spawns (most minus fewest, % of even)`, '%', spread);
}

function tally(urls: string[]): Map<string, number> {
  const by = new Map<string, number>();
  for (const u of urls) by.set(new URL(u).origin, (by.get(new URL(u).origin) ?? 0) + 1);
  return by;
}
