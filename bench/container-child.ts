/**
 * @module bench/container-child
 * A container in its own process, so the benchmark can read the container's memory without the client's.
 * Started with `fork()` by bench/harness.ts: argv[2] is the data directory, argv[3] container options as JSON. It reports
 * `{ url }` over IPC once listening, answers `{ type: 'gc' }` with `{ rss }` (after a GC when run with
 * --expose-gc) and `{ type: 'cpu' }` with its CPU time so far (every thread of the process), and closes
 * gracefully on `{ type: 'close' }` or when the parent goes away.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { getHeapStatistics } from 'node:v8';
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
  } else if (msg?.type === 'mem') {
    void breakdown().then((m) => process.send!({ type: 'mem', ...m }));
  } else if (msg?.type === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.send!({ type: 'cpu', ms: (user + system) / 1000 });
  } else if (msg?.type === 'close') void shutdown(0);
});
process.on('disconnect', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

/**
 * Where the resident memory is, in bytes: anonymous (heap, malloc) vs file-backed (LevelDB maps its table
 * files), V8's share, and LevelDB's own count of its memtables and table files.
 */
async function breakdown(): Promise<Record<string, number>> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
  const smaps = await readFile('/proc/self/smaps', 'utf8').catch(() => '');
  let ldbRss = 0;
  let inLdb = false;
  for (const line of smaps.split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inLdb = line.endsWith('.ldb');
    else if (inLdb && line.startsWith('Rss:')) ldbRss += Number(line.split(/\s+/)[1]) * 1024;
  }
  let ldbFds = 0;
  for (const fd of await readdir('/proc/self/fd').catch(() => [] as string[])) {
    if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')).endsWith('.ldb')) ldbFds++;
  }
  const h = getHeapStatistics();
  const m = process.memoryUsage();
  const db = { getProperty: (p: string) => c.runtime.store.property(p) };
  let tables = 0;
  for (let level = 0; level < 7; level++) tables += Number(db.getProperty(`leveldb.num-files-at-level${level}`) ?? Number.NaN);
  return {
    rss: kb('VmRSS'), rssAnon: kb('RssAnon'), rssFile: kb('RssFile'), threads: kb('Threads') / 1024, ldbMappedRss: ldbRss, ldbFds,
    heapUsed: h.used_heap_size, heapTotal: h.total_heap_size, external: m.external, arrayBuffers: m.arrayBuffers, malloced: h.malloced_memory,
    levelMem: Number(db.getProperty('leveldb.approximate-memory-usage') ?? Number.NaN), tables,
  };
}
