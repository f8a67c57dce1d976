/**
 * @module bench/container-child
 * A container in its own process, so the benchmark can read the container's memory without the client's.
 * Started with `fork()` by bench/harness.ts: argv[2] is the data directory, argv[3] container options as JSON. It reports
 * `{ url }` over IPC once listening, answers `{ type: 'gc' }` with `{ rss }` (after a GC when run with
 * --expose-gc) and `{ type: 'cpu' }` with its CPU time so far (every thread of the process), and closes
 * gracefully on `{ type: 'close' }` or when the parent goes away.
 */
import { Container } from '../container/index.js';

const data = process.argv[2];
const options = JSON.parse(process.argv[3] ?? '{}') as Record<string, unknown>;
if (!data || !process.send) {
  process.stderr.write('usage: fork(container-child.js, [dataDir, optionsJson])\n');
  process.exit(2);
}

const started = performance.now();
const c = await Container.start({ port: 0, logLevel: 'silent', poolMin: 0, idleTimeoutMs: 600_000, ...options, data });
process.send!({ type: 'listening', url: c.url, startMs: performance.now() - started });

let closing = false;
async function shutdown(code: number): Promise<void> {
  if (closing) return;
  closing = true;
  await c.close().catch(() => {});
  process.exit(code);
}

process.on('message', (msg: { type?: string }) => {
  if (msg?.type === 'gc') {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) {
      gc();
      gc();
    }
    process.send!({ type: 'rss', rss: process.memoryUsage().rss, heapUsed: process.memoryUsage().heapUsed });
  } else if (msg?.type === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.send!({ type: 'cpu', ms: (user + system) / 1000 });
  } else if (msg?.type === 'close') void shutdown(0);
});
process.on('disconnect', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
