/**
 * @module bench/migration
 * Moving nodes between containers (`BENCH_ONLY=migration`): three containers in their own processes, peers
 * of each other. Measures the time to move one node holding 10 MB of state (moved back and forth, one run
 * each way) and the drain rate of one container holding BENCH_DRAIN_NODES sleeping nodes (default 10,000;
 * 2,000 when quick) to the other two.
 */
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connect, Identity, Lifetime } from '../index.js';
import { dataDir, forkContainer, log, notes, QUICK, row, RUNS, type ChildContainer } from './harness.js';
import { fmt } from './stats.js';

const DRAIN_NODES = Number(process.env.BENCH_DRAIN_NODES ?? (QUICK ? 2_000 : 10_000));
const STATE_MB = 10;
const MB = 1024 * 1024;

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export async function benchMigration(): Promise<void> {
  log(`migration: a node with ${STATE_MB} MB of state moved back and forth; a drain of ${DRAIN_NODES.toLocaleString('en-US')} sleeping nodes`);
  const ports = await freePorts(3);
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  const members: { child: ChildContainer; data: string }[] = [];
  for (const [i, port] of ports.entries()) {
    const data = await dataDir(`migration-${i}`);
    const capacity = { maxNodes: DRAIN_NODES * 2 + 1000, maxAwake: 100, memoryMB: 16 * 1024 };
    members.push({ data, child: await forkContainer(data, { port, peers: urls.filter((_, j) => j !== i), capacity, maxBodyBytes: 16 * MB }) });
  }
  const [a, b, c] = await Promise.all(members.map(async (m) => connect(m.child.url, { identity: await Identity.load(join(m.data, 'operator.key')) })));
  try {
    // One node, 10 refs of 1 MB each.
    const node = await a!.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite', maxMessageBytes: 2 * MB, timeoutMs: 30_000 } });
    const chunk = new Uint8Array(MB).map((_, i) => i & 0xff);
    for (let i = 0; i < STATE_MB; i++) await a!.at(node, async (ctx, i: number, bytes: Uint8Array) => ctx.ref(`part${i}`).set(bytes), i, chunk);
    const times: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const to = urls[run % 2 === 0 ? 1 : 0]!;
      const t0 = performance.now();
      const r = await a!.move(node, to);
      times.push(performance.now() - t0);
      if (run === 0) log(`  moved ${fmt(r.bytes / MB)} MB in ${fmt(r.ms)} ms (container's own count)`);
    }
    const size = await a!.at(node, async (ctx) => {
      let n = 0;
      for (let i = 0; i < 10; i++) n += ((await ctx.ref(`part${i}`).get()) as Uint8Array).length;
      return n;
    });
    if (size !== STATE_MB * MB) notes.push(`migration: the moved node holds ${size} bytes, not ${STATE_MB * MB}`);
    row(`move: one node with ${STATE_MB} MB of state to a peer`, 'ms', times);

    // Sleeping nodes, spawned in batches, then drained off C.
    for (let n = 0; n < DRAIN_NODES; n += 10_000) await c!.spawnMany(Math.min(10_000, DRAIN_NODES - n), { lifetime: Lifetime.root() });
    const report = await c!.drain({ concurrency: 16 });
    if (report.failed.length) notes.push(`migration: ${report.failed.length} nodes did not move in the drain (first: ${report.failed[0]!.code}: ${report.failed[0]!.message})`);
    log(`  drain: ${report.nodes} nodes in ${fmt(report.ms / 1000)} s; peers took ${Object.values(report.peers).join(' / ')}`);
    row(`drain: ${DRAIN_NODES.toLocaleString('en-US')} sleeping nodes to 2 peers`, 'nodes/s', [report.nodesPerSecond]);
    void b;
  } finally {
    await Promise.all([a, b, c].map((x) => x?.close()));
  }
}
