/**
 * @module bench/sleepers
 * Millions of sleeping nodes on one container (BENCH_SLEEPERS, default 10,000,000; 1,000,000 when quick):
 * the container's resident memory while they are spawned and after, and the time from a restart to the first
 * reply. Sleeping nodes must cost only store records, so RSS stays flat however many there are. Takes many
 * minutes (the spawn rate sets how many): `BENCH_ONLY=sleepers`. Needs about 400 bytes of disk per node.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { connect, Identity, Lifetime, type NodeId } from '../index.js';
import { dataDir, forkContainer, log, notes, QUICK, row } from './harness.js';
import { fmt, median, target } from './stats.js';

const NODES = Number(process.env.BENCH_SLEEPERS ?? (QUICK ? 1_000_000 : 10_000_000));
const BATCH = 10_000;
/** Batches in flight: spawnMany is one signed message, so two keep the container busy while one travels. */
const IN_FLIGHT = 2;
const MB = 1024 * 1024;

export async function benchSleepers(): Promise<void> {
  log(`sleepers: ${NODES.toLocaleString('en-US')} nodes`);
  const data = await dataDir('sleepers');
  let child = await forkContainer(data, { capacity: { maxNodes: NODES + 1000, maxAwake: 100, memoryMB: 16 * 1024 } });
  const operator = await Identity.load(join(data, 'operator.key'));
  let client = await connect(child.url, { identity: operator, connections: IN_FLIGHT });
  let first: NodeId | undefined;
  try {
    const samples: { nodes: number; rss: number }[] = [];
    const rates: number[] = [];
    let spawned = 0;
    let issued = 0;
    const t0 = performance.now();
    let tMark = t0;
    let marked = 0;
    const lane = async () => {
      while (issued < NODES) {
        const n = Math.min(BATCH, NODES - issued);
        issued += n;
        // The handles hold private keys: keep none of them, or the bench (not the container) runs out of memory.
        const nodes = await client.spawnMany(n, { lifetime: Lifetime.root() });
        first ??= nodes[0]!.id;
        spawned += n;
        if (spawned - marked >= NODES / 20 || spawned === NODES) {
          const now = performance.now();
          rates.push((spawned - marked) / ((now - tMark) / 1000));
          tMark = now;
          marked = spawned;
          // Resident memory as it is, without a forced collection: what the host actually pays.
          const m = await child.mem();
          const rss = m.rss!;
          samples.push({ nodes: spawned, rss });
          log(`  ${fmt(spawned / 1e6)}M nodes, ${fmt(rates.at(-1)!)} nodes/s, ${describeMem(m)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
    const totalS = (performance.now() - t0) / 1000;
    const afterGc = await child.rss();
    log(`  after GC: ${describeMem(await child.mem())}`);
    const secondHalf = samples.filter((s) => s.nodes > NODES / 2).map((s) => s.rss / MB);
    const million = `${fmt(NODES / 1e6)}M`;
    row(`sleepers: spawnMany batches of ${BATCH} towards ${million} nodes (container in own process)`, 'nodes/s', [median(rates)], target('spawnMany'));
    row(`container RSS while spawning, highest in the second half (${million} nodes)`, 'MB', [Math.max(...secondHalf)], target('sleepersRss', NODES >= 10_000_000 ? 'same' : `${million} nodes (BENCH_SLEEPERS); the target is for 10M`));
    row(`container RSS with ${million} sleeping nodes (after GC)`, 'MB', [afterGc.rss / MB], target('sleepersRss', NODES >= 10_000_000 ? 'same' : `${million} nodes (BENCH_SLEEPERS); the target is for 10M`));
    const du = await execFileP('du', ['-sm', join(data, 'db')]).then((r) => Number(r.stdout.split('\t')[0])).catch(() => Number.NaN);
    notes.push(`sleepers: ${million} nodes in ${fmt(totalS)} s; store ${fmt(du)} MB on disk (${fmt((du * MB) / NODES)} bytes/node); RSS by nodes: ${samples.map((s) => `${fmt(s.nodes / 1e6)}M ${fmt(s.rss / MB)}`).join(', ')} MB`);

    await client.close();
    await child.close();
    const r0 = performance.now();
    child = await forkContainer(data, { capacity: { maxNodes: NODES + 1000, maxAwake: 100, memoryMB: 16 * 1024 } });
    client = await connect(child.url, { identity: operator });
    await client.describe(first!);
    row(`restart with ${million} sleeping nodes → first reply (process start included)`, 'ms', [performance.now() - r0], target('restart', NODES >= 10_000_000 ? 'same' : `${million} nodes (BENCH_SLEEPERS); the target is for 10M`));
    const settled = await child.rss();
    log(`  restarted, after GC: ${describeMem(await child.mem())}`);
    notes.push(`sleepers: after the restart Container.start took ${fmt(child.startMs)} ms; RSS ${fmt(settled.rss / MB)} MB`);
  } finally {
    await client.close().catch(() => {});
    await child.close();
  }
}

const execFileP = promisify(execFile);

function describeMem(m: Record<string, number>): string {
  return (
    `RSS ${fmt(m.rss! / MB)} MB (anon ${fmt(m.rssAnon! / MB)}, file ${fmt(m.rssFile! / MB)} of which table maps ${fmt(m.ldbMappedRss! / MB)}; ` +
    `V8 heap ${fmt(m.heapUsed! / MB)}/${fmt(m.heapTotal! / MB)}, external ${fmt(m.external! / MB)}, V8 malloced ${fmt(m.malloced! / MB)}; ` +
    `LevelDB memtables ${fmt(m.levelMem! / MB)}, ${m.tables} tables, ${m.ldbFds} open; ${m.threads} threads)`
  );
}
