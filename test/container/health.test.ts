/**
 * What Kubernetes' probes and pod termination rely on: `/livez` answers while the process runs, `/readyz`
 * answers 200 only while the container is open (not while it stops), and SIGTERM to `keynode start` ends the
 * container and every worker process it started, with exit code 0, within a bound well inside a pod's grace
 * period. Sockets and processes opened here are closed in `finally` blocks or by the helpers' afterAll.
 */
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connect, isKeynodeError, Lifetime } from 'keynode';
import { alive, startContainer, startContainerProcess, tempDir, until } from '../helpers/containers.js';

/** The pids whose parent is `ppid` (Linux /proc); the container's workers are its direct children. */
function childrenOf(ppid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Field 4 (ppid) follows the command name, which is in parentheses and may hold spaces.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

async function get(url: string): Promise<number> {
  const res = await fetch(url);
  await res.arrayBuffer();
  return res.status;
}

describe('health endpoints and SIGTERM', () => {
  it('/livez and /readyz answer 200 while open; /readyz answers 503 once the container is stopping', async () => {
    const { container, client, url } = await startContainer();
    expect(await get(`${url}/livez`)).toBe(200);
    expect(await get(`${url}/readyz`)).toBe(200);

    // An eval that runs until its time limit keeps the container in 'closing' for that long.
    const node = await client.spawn({ lifetime: Lifetime.root(), sandbox: { timeoutMs: 4_000 } });
    await client.at(node, () => 1); // awake, so close() has an eval to wait for
    const looping = client.at(node, () => {
      for (;;);
    }).catch((e: unknown) => e);
    await until(async () => (await client.describe(node)).status === 'active', 10_000, 'the eval to start');

    // A probe whose request began before close(): a new connection would be refused once the server stops
    // listening (which kubelet also counts as not ready); this one reaches the handler and must hear 503.
    const socket = netConnect(Number(new URL(url).port), '127.0.0.1');
    try {
      socket.on('error', () => {});
      await once(socket, 'connect');
      socket.write('GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      // The server runs in this process: once this timer fires, an event-loop turn has read those bytes, so
      // close() finds a request in progress on this socket rather than an idle one to drop.
      await new Promise((r) => setTimeout(r, 50));
      const closed = container.close();
      expect(container.status).toBe('closing');
      let answer = '';
      socket.on('data', (c: Buffer) => (answer += c.toString()));
      socket.write('\r\n');
      await until(() => answer.includes('\r\n\r\n'), 10_000, 'the /readyz answer');
      expect(answer).toMatch(/^HTTP\/1\.1 503 /);
      expect(answer).toContain('not ready');
      await closed;
    } finally {
      socket.destroy();
    }
    const e = await looping;
    expect(isKeynodeError(e) ? e.code : e).toBeTypeOf('string'); // settled with a code, not left hanging
  });

  it('SIGTERM to `keynode start` ends it with exit code 0 and ends every worker it started', async (ctx) => {
    if (process.platform !== 'linux') {
      console.warn('skipped: finding the container\'s worker processes reads /proc (Linux only)');
      ctx.skip();
    }
    const data = await tempDir();
    const proc = await startContainerProcess(data, ['--idle-timeout-ms', '60000', '--pool-min', '2']);
    const client = await connect(proc.url, { identity: proc.operator });
    try {
      const nodes = await Promise.all([1, 2, 3].map(() => client.spawn({ lifetime: Lifetime.root(), sandbox: { timeoutMs: 3_000 } })));
      await Promise.all(nodes.map((n) => client.at(n, () => 'awake')));
      const pid = proc.child.pid!;
      let workers: number[] = [];
      await until(() => (workers = childrenOf(pid)).length >= 3, 20_000, 'three workers');

      // One eval still running when the signal arrives: it finishes or times out, and its caller hears which.
      const inFlight = client.at(nodes[0]!, () => {
        for (;;);
      }).catch((e: unknown) => e);
      await until(async () => (await client.describe(nodes[0]!)).status === 'active', 10_000, 'the eval to start');

      const t0 = Date.now();
      proc.child.kill('SIGTERM');
      const result = await proc.child;
      const tookMs = Date.now() - t0;
      expect(result.exitCode).toBe(0);
      // The eval's 3 s limit plus shutdown; the manifests give the process far more (terminationGracePeriodSeconds).
      expect(tookMs).toBeLessThan(30_000);
      const e = await inFlight;
      expect(isKeynodeError(e) ? e.code : e).toBeTypeOf('string');
      await until(() => workers.every((w) => !alive(w)), 10_000, 'every worker to exit');
    } finally {
      await client.close();
    }
  }, 120_000);
});
