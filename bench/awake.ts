/**
 * @module bench/awake
 * Density: many awake, idle nodes on one container (BENCH_AWAKE_NODES, default 1,000, 16 MB heap each), the
 * proportional memory (PSS) of their workers, and what the container and the workers spend on them at rest
 * (RSS watch, sweeps, budgets). Takes minutes: every node needs a process of its own. `BENCH_ONLY=awake`.
 */
import { readdir, readFile } from 'node:fs/promises';
import { Lifetime } from '../index.js';
import { log, notes, QUICK, row, startForked } from './harness.js';
import { fmt, median, pooled, sleep, target } from './stats.js';

const NODES = Number(process.env.BENCH_AWAKE_NODES ?? (QUICK ? 200 : 1000));
const REST_MS = QUICK ? 5000 : 10_000;
const TICKS = 100; // USER_HZ on Linux

/** utime + stime of a process, in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const text = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
    for (const c of text.split(' ')) if (c.trim()) out.push(Number(c));
  }
  return out;
}

async function pssMB(pid: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
  const kb = /^Pss:\s+(\d+)/m.exec(text)?.[1];
  return kb === undefined ? undefined : Number(kb) / 1024;
}

export async function benchAwake(): Promise<void> {
  log(`awake: ${NODES} nodes`);
  const f = await startForked('awake', { poolMin: 2, capacity: { maxNodes: NODES + 10, maxAwake: NODES, memoryMB: NODES * 16 } }, { connections: 16 });
  try {
    // isolation 'process': each wake keeps its own process (nodes of one tenant would otherwise hand their
    // workers to each other as they wake, and the container would never hold more processes than it needs).
    const nodes = await f.client.spawnMany(NODES, { lifetime: Lifetime.root(), sandbox: { memoryMB: 16, isolation: 'process' } });
    const t0 = performance.now();
    await pooled(nodes.length, 16, (i) => f.client.at(nodes[i]!, () => 1));
    const wakeS = (performance.now() - t0) / 1000;
    const awake = (await f.stats()).awake!;
    log(`  woke ${awake} nodes in ${fmt(wakeS)} s`);
    const pid = f.child.proc.pid!;
    await sleep(2000); // let the last wakes' refills and the collector settle
    const workers = (await childrenOf(pid)).filter((p) => p !== undefined);
    const c0 = await cpuSeconds(pid);
    const w0 = (await Promise.all(workers.map(cpuSeconds))).reduce((a, b) => a + b, 0);
    await sleep(REST_MS);
    const c1 = await cpuSeconds(pid);
    const w1 = (await Promise.all(workers.map(cpuSeconds))).reduce((a, b) => a + b, 0);
    const pss = (await Promise.all(workers.map(pssMB))).filter((x): x is number => x !== undefined);
    const stillAwake = (await f.stats()).awake!;
    const { rss } = await f.child.rss();
    row(`awake idle nodes held (of ${NODES} woken, after ${REST_MS / 1000} s at rest)`, 'nodes', [stillAwake], target('awakeHeld', NODES >= 1000 ? 'same' : `${NODES} woken (BENCH_AWAKE_NODES); the target is 1,000`));
    row(`proportional memory (PSS) per awake node, ${pss.length} workers alive`, 'MB', [median(pss)], target('density', stillAwake >= 1000 ? 'same' : `measured with ${stillAwake} awake; the target is for 1,000`));
    row(`container CPU at rest with ${stillAwake} awake nodes`, '% of a core', [(100 * (c1 - c0)) / (REST_MS / 1000)]);
    row(`all ${workers.length} workers' CPU at rest together`, '% of a core', [(100 * (w1 - w0)) / (REST_MS / 1000)]);
    notes.push(
      `awake: woke ${NODES} nodes in ${fmt(wakeS)} s (${fmt(NODES / wakeS)} wakes/s, each a process start); PSS sum ${fmt(pss.reduce((a, b) => a + b, 0) / 1024)} GB; ` +
        `container RSS ${fmt(rss / 1024 / 1024)} MB; CPU read from /proc at 1/${TICKS} s resolution`,
    );
  } finally {
    await f.close();
  }
}
