/**
 * @module bench/wake
 * Wakes: latency from asleep to first result by where the worker came from (a spare of the tenant, a blank
 * from the pool, a new process), and sustained wakes of distinct sleeping nodes (the shape the peer's
 * new-object rate is measured with). Containers run in their own process, as deployed; the source of each
 * wake is confirmed from the container's counters, so a sample that took another path is reported, not
 * counted.
 */
import { Lifetime, type Client, type NodeHandle, type SandboxOptions } from '../index.js';
import type { ContainerOptions } from '../container/index.js';
import { log, notes, QUICK, row, RUNS, startForked } from './harness.js';
import { fmt, median, percentile, pooled, sleep, target } from './stats.js';

const SIZE = {
  latencySamples: QUICK ? 10 : 20,
  coldSamples: QUICK ? 3 : 5,
  sustainedNodes: 300,
  sustainedInFlight: 16,
  processNodes: QUICK ? 60 : 100,
};

type Source = 'wakesFromSpare' | 'wakesFromSteal' | 'wakesFromBlank' | 'wakesFromNewProcess';

/** One eval that writes a ref: the peer's first call also writes to storage. */
const write = (ctx: { ref(name: string): { set(v: unknown): Promise<void> } }, i: number) => ctx.ref('n').set(i);

/**
 * Wake latency when the worker comes from `source`. `between` runs after each sample (outside the timing) to
 * set the next one up: destroy the node (its worker becomes a spare) or refill the pool.
 */
async function latency(name: string, options: Partial<ContainerOptions>, source: Source, samplesPerRun: number, between: (f: { client: Client; node: NodeHandle; warm(): Promise<void> }) => Promise<void>): Promise<number[]> {
  const f = await startForked(name, options);
  try {
    const nodes = await f.client.spawnMany(RUNS * samplesPerRun + 2, { lifetime: Lifetime.root() });
    const warm = async () => {
      // Until the pool holds its floor: the stats say how many blanks are ready.
      for (let i = 0; i < 200 && (await f.stats()).blankWorkers < (options.poolMin ?? 0); i++) await sleep(25);
    };
    let k = 0;
    let missed = 0;
    const sample = async (): Promise<number | undefined> => {
      const node = nodes[k++]!;
      const before = (await f.stats())[source]!;
      const t0 = performance.now();
      await f.client.at(node, write, k);
      const ms = performance.now() - t0;
      const took = (await f.stats())[source]! - before === 1;
      await between({ client: f.client, node, warm });
      if (!took) missed++;
      return took ? ms : undefined;
    };
    await sample(); // warm-up: the first wake of a container pays for code paths it has not run yet
    await sample();
    const perRun: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const samples: number[] = [];
      for (let i = 0; i < samplesPerRun; i++) {
        const ms = await sample();
        if (ms !== undefined) samples.push(ms);
      }
      if (samples.length) perRun.push(median(samples));
    }
    if (missed) notes.push(`wake (${name}): ${missed} samples took another path than ${source} and were left out`);
    return perRun;
  } finally {
    await f.close();
  }
}

/** Wakes `count` distinct sleeping nodes, `inFlight` at a time, each eval writing a ref; nodes per second. */
async function sustained(client: Client, nodes: NodeHandle[], inFlight: number, latencies: number[]): Promise<number> {
  const t0 = performance.now();
  await pooled(nodes.length, inFlight, async (i) => {
    const s = performance.now();
    await client.at(nodes[i]!, write, i);
    latencies.push(performance.now() - s);
  });
  return nodes.length / ((performance.now() - t0) / 1000);
}

async function sustainedRuns(name: string, sandbox: SandboxOptions, count: number, runs: number): Promise<{ rates: number[]; p50: number; sources: string }> {
  const f = await startForked(name, { poolMin: 2 }, { connections: SIZE.sustainedInFlight });
  try {
    const warmup = await f.client.spawnMany(SIZE.sustainedInFlight * 2, { lifetime: Lifetime.root(), sandbox });
    await sustained(f.client, warmup, SIZE.sustainedInFlight, []);
    const before = await f.stats();
    const rates: number[] = [];
    const latencies: number[] = [];
    for (let r = 0; r < runs; r++) {
      const nodes = await f.client.spawnMany(count, { lifetime: Lifetime.root(), sandbox });
      rates.push(await sustained(f.client, nodes, SIZE.sustainedInFlight, latencies));
    }
    const after = await f.stats();
    const d = (k: string) => after[k]! - before[k]!;
    const sources = `spare ${d('wakesFromSpare')}, steal ${d('wakesFromSteal')}, blank ${d('wakesFromBlank')}, new process ${d('wakesFromNewProcess')}; ${after.awake} awake at the end`;
    return { rates, p50: percentile(latencies, 50), sources };
  } finally {
    await f.close();
  }
}

export async function benchWakes(): Promise<void> {
  log('wake');
  const destroy = async ({ client, node }: { client: Client; node: NodeHandle }) => {
    await client.destroy(node); // an idle node's worker is scrubbed and parked for the tenant
  };
  row('wake p50 from a spare worker of the tenant (asleep → first result)', 'ms', await latency('wake-spare', { poolMin: 0 }, 'wakesFromSpare', SIZE.latencySamples, destroy), target('wakeWarm'));
  row('wake p50 from a blank pooled worker (workerReuse off)', 'ms', await latency('wake-pool', { poolMin: 2, workerReuse: 'off' }, 'wakesFromBlank', SIZE.latencySamples, async (f) => {
    await destroy(f);
    await f.warm();
  }), target('wakeWarm'));
  row('wake p50 with no worker to take (new process)', 'ms', await latency('wake-cold', { poolMin: 0, poolMax: 0, workerReuse: 'off' }, 'wakesFromNewProcess', SIZE.coldSamples, destroy), target('wakeCold'));

  const shared = await sustainedRuns('wake-sustained', {}, SIZE.sustainedNodes, RUNS);
  row(`sustained wakes: ${SIZE.sustainedNodes} distinct sleeping nodes, one ref write each, ${SIZE.sustainedInFlight} in flight`, 'nodes/s', shared.rates, target('wakesSustained'));
  notes.push(`sustained wakes: p50 ${fmt(shared.p50)} ms per wake; workers from ${shared.sources}`);
  const isolated = await sustainedRuns('wake-isolated', { isolation: 'process' }, SIZE.processNodes, QUICK ? 2 : 3);
  row(`sustained wakes, isolation 'process' (${SIZE.processNodes} nodes; bounded by process starts)`, 'nodes/s', isolated.rates);
  notes.push(`sustained wakes, isolation 'process': p50 ${fmt(isolated.p50)} ms per wake; workers from ${isolated.sources}`);
}
