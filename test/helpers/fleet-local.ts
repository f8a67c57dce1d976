/**
 * Fleets for tests in one process, on loopback ports: containers that know each other as peers from their first start. Their ports are
 * reserved first (bound on 0 and released), since each one's `--peers` names the others' URLs.
 */
import { createServer } from 'node:net';
import type { ContainerOptions } from 'keynode/container';
import { startContainer, startContainerProcess, tempDir, type ContainerProcess, type TestContainer } from './containers.js';

export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** `n` containers in this process, each with the others as peers. */
export async function startFleet(n: number, options: Partial<ContainerOptions> = {}): Promise<TestContainer[]> {
  const ports = await freePorts(n);
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  const out: TestContainer[] = [];
  for (const [i, port] of ports.entries()) out.push(await startContainer({ ...options, port, peers: urls.filter((_, j) => j !== i) }));
  return out;
}

export interface FleetProcessSpec {
  port: number;
  data: string;
  peers: string[];
}

/** Ports, data directories and peers for `n` containers run as their own processes (crash tests restart them). */
export async function fleetSpecs(n: number): Promise<FleetProcessSpec[]> {
  const ports = await freePorts(n);
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  return Promise.all(ports.map(async (port, i) => ({ port, data: await tempDir(), peers: urls.filter((_, j) => j !== i) })));
}

export function startMember(spec: FleetProcessSpec, env: Record<string, string> = {}): Promise<ContainerProcess> {
  return startContainerProcess(spec.data, ['--port', String(spec.port), '--peers', spec.peers.join(','), '--pool-min', '0'], env);
}
