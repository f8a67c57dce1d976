/**
 * @module bench/eval-ab
 * Warm eval, one build against another, runs alternated in one session (how the protocol v2 → v3 figures in
 * the README were taken): `node dist/bench/eval-ab.js <root A> <root B> [evals] [pairs]`, each root a
 * checkout with its `dist/` built. Each run starts a container in a fresh process with its client, warms one
 * node, then times sequential `client.at(node, () => 1)` and reads the process's CPU time (client and
 * container; not the worker). Prints one JSON line per run.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const [rootA, rootB, evals = '3000', pairs = '3'] = process.argv.slice(2);

const ONE_RUN = `
const root = process.argv[1];
const N = Number(process.argv[2]);
const { connect, Lifetime } = await import(root + '/dist/index.js');
const { Container } = await import(root + '/dist/container/index.js');
const { mkdtempSync, rmSync } = await import('node:fs');
const data = mkdtempSync('/tmp/keynode-ab-');
const c = await Container.start({ port: 0, data, logLevel: 'silent', poolMin: 1 });
const client = await connect(c.url, { identity: c.operator });
const n = await client.spawn({ lifetime: Lifetime.root() });
for (let i = 0; i < 500; i++) await client.at(n, () => 1);
const samples = [];
const cpu0 = process.cpuUsage();
for (let i = 0; i < N; i++) { const t = performance.now(); await client.at(n, () => 1); samples.push(performance.now() - t); }
const cpu = process.cpuUsage(cpu0);
samples.sort((a, b) => a - b);
console.log(JSON.stringify({ root, p50ms: +samples[Math.floor(N / 2)].toFixed(3), p99ms: +samples[Math.floor(N * 0.99)].toFixed(3), cpuUsPerEval: Math.round((cpu.user + cpu.system) / N) }));
await client.close();
await c.close();
rmSync(data, { recursive: true, force: true });
`;

if (!rootA || !rootB) {
  process.stderr.write(`usage: node ${fileURLToPath(import.meta.url)} <root A> <root B> [evals] [pairs]\n`);
  process.exit(2);
}
for (let i = 0; i < Number(pairs); i++) {
  for (const root of [rootA, rootB]) process.stdout.write(execFileSync(process.execPath, ['--input-type=module', '-e', ONE_RUN, root, evals], { encoding: 'utf8' }));
}
