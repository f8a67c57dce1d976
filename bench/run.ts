/**
 * @module bench/run
 * `npm run bench`: measures keynode against the targets the README lists (Benchmarks › Targets) and prints a
 * table with a verdict in words beside each, MET or NOT MET, or why there is none. It reports and never
 * asserts. Each metric is the median of several runs after a short warm-up.
 *
 * Environment:
 * - BENCH_QUICK=1   smaller samples (a few minutes on a quiet 2-core machine; the full run several; both
 *                   take 2 to 3 times longer when the calibration line shows the machine loaded);
 * - BENCH_ONLY=a,b  only these sections: spawn, eval, wake, memory (the default set), and the long ones that
 *                   run only when named: awake (1,000 awake nodes), sleepers (10 million sleeping nodes),
 *                   migration (a move of a node with 10 MB of state; a drain of 10,000 sleeping nodes), fleet
 *                   (three containers in network namespaces, or on loopback ports without root);
 * - BENCH_MEMORY_NODES=n  sleeping nodes for the memory section (default 100,000; 10,000 when quick);
 * - BENCH_AWAKE_NODES=n, BENCH_SLEEPERS=n, BENCH_DRAIN_NODES=n  sizes of the long sections.
 *
 * Every section forks the container into its own process (bench/container-child.ts), as it is deployed and as
 * the peer's benchmark runs workerd: a client in this process never shares an event loop with the container.
 */
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { cpus, loadavg, totalmem } from 'node:os';
import { benchAwake } from './awake.js';
import { benchEval } from './eval.js';
import { benchFleet } from './fleet.js';
import { cleanup, log, notes, openRoot, QUICK, rows, RUNS } from './harness.js';
import { benchMemory } from './memory.js';
import { benchMigration } from './migration.js';
import { benchSleepers } from './sleepers.js';
import { benchSpawn } from './spawn.js';
import { fmt, renderTable } from './stats.js';
import { benchWakes } from './wake.js';

const ONLY = new Set((process.env.BENCH_ONLY ?? 'spawn,eval,wake,memory').split(',').map((s) => s.trim()).filter(Boolean));

/**
 * The machine's speed now, against the reference machine the targets were set on (README › Benchmarks ›
 * Targets: ~35k Ed25519 key pairs/s, ~15k verifies/s): on a shared, noisy host the same code measures very
 * differently from one hour to the next.
 */
function calibrate(): string {
  const rate = (f: () => void, ms = 300): number => {
    for (let i = 0; i < 50; i++) f();
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      f();
      n++;
    }
    return n / ((performance.now() - t0) / 1000);
  };
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const msg = new Uint8Array(200);
  const sig = sign(null, msg, privateKey);
  const keys = rate(() => generateKeyPairSync('ed25519'));
  const verifies = rate(() => verify(null, msg, publicKey, sig));
  return `calibration: Ed25519 ${fmt(keys)} key pairs/s (reference: ~35k), ${fmt(verifies)} verifies/s (reference: ~15k) → machine at ~${fmt((100 * verifies) / 15_000)}% of the targets' reference speed`;
}

// --- main ------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const began = performance.now();
  await openRoot();
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  const cpu = cpus();
  const loadBefore = loadavg()[0]!;
  const calibration = calibrate();
  log(calibration);
  log(`keynode bench${QUICK ? ' (BENCH_QUICK=1)' : ''}: ${RUNS} runs per metric; progress on stderr, report on stdout`);
  try {
    const sections: [string, () => Promise<void>][] = [
      ['spawn', benchSpawn], ['eval', benchEval], ['wake', benchWakes], ['memory', benchMemory], ['awake', benchAwake], ['sleepers', benchSleepers], ['migration', benchMigration], ['fleet', benchFleet],
    ];
    for (const [name, f] of sections) {
      if (!ONLY.has(name)) continue;
      const t0 = performance.now();
      await f();
      log(`  (${name}: ${fmt((performance.now() - t0) / 1000)} s)`);
    }
  } finally {
    await cleanup();
  }
  const out = [
    '',
    `keynode benchmark${QUICK ? ' (quick)' : ''}`,
    `node ${process.version} · ${cpu.length} CPUs (${cpu[0]?.model.trim() ?? 'unknown'}) · ${fmt(totalmem() / 1024 ** 3)} GB RAM · ${process.platform}/${process.arch}`,
    `${calibration}; load average ${loadBefore.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`,
    `median of the runs shown; every section forks the container into its own process; total ${fmt((performance.now() - began) / 1000)} s`,
    '',
    renderTable(rows),
    ...(notes.length ? ['', ...notes.map((n) => `note: ${n}`)] : []),
    '',
  ];
  process.stdout.write(out.join('\n'));
}

await main();
