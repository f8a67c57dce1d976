/**
 * Three (or n) containers as one fleet, each a real `keynode start` process: in its own network namespace
 * where this runs as root, else on loopback ports (dist/bench/fleet-net.js makes either; this file prints
 * which ran and why). Everything made is removed after the test file (afterAll), and failing that when
 * this process exits; a run killed outright is swept by the next one.
 */
import { join } from 'node:path';
import { Identity } from 'keynode';
import { fleetHosts, launchMember, type MemberProcess } from '../../dist/bench/fleet-net.js';
import { defer, tempDir } from './containers.js';

export interface FleetMember {
  url: string;
  data: string;
  operator: Identity;
  process: MemberProcess;
  /** Its log lines so far (JSON, as the container writes them). */
  logs(): string;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

export interface TestFleet {
  mode: 'netns' | 'loopback';
  why: string;
  members: FleetMember[];
  /** In netns mode: a `dns:` peers entry that resolves (inside the namespaces) to every member. */
  dnsPeers?: string;
  /** Starts member i again on the same data (after kill9/stop), or on a fresh data directory: a new container ID at the same URL. */
  restart(i: number, options?: { freshData?: boolean }): Promise<void>;
}

export interface FleetOptions {
  n?: number;
  /** Extra `keynode start` flags for every member. */
  flags?: string[];
  /** Peers by the shared DNS name (netns mode; by URL on loopback, where there is no such name). */
  dns?: boolean;
}

/** Starts the fleet; resolves once every member is listening. */
export async function startFleet(options: FleetOptions = {}): Promise<TestFleet> {
  const n = options.n ?? 3;
  const { mode, why, net, hosts } = await fleetHosts(n);
  if (net) defer(async () => net.remove());
  process.stderr.write(`fleet harness: ${mode} mode (${why})\n`);
  const urls = hosts.map((h) => `http://${h.host}:${h.port}`);
  const datas = await Promise.all(hosts.map(() => tempDir('keynode-fleet-')));
  const dnsPeers = net ? `dns:${net.dnsName}:${hosts[0]!.port}` : undefined;
  const members: FleetMember[] = [];

  const launch = async (i: number, data: string): Promise<FleetMember> => {
    const peers = options.dns && dnsPeers ? [dnsPeers] : urls.filter((_, j) => j !== i);
    const proc = await launchMember({
      ...(net ? { ns: net.namespaces[i]! } : {}), ...hosts[i]!, data, peers,
      flags: ['--pool-min', '1', ...(options.flags ?? [])], env: { KEYNODE_MIN_PERIOD_MS: '10' },
    });
    defer(() => proc.kill('SIGKILL'));
    return {
      url: proc.url,
      data,
      operator: await Identity.load(join(data, 'operator.key')),
      process: proc,
      logs: proc.logs,
      kill9: () => proc.kill('SIGKILL'),
      stop: () => proc.kill('SIGTERM'),
    };
  };

  members.push(...(await Promise.all(hosts.map((_, i) => launch(i, datas[i]!)))));
  return {
    mode,
    why,
    members,
    ...(dnsPeers ? { dnsPeers } : {}),
    async restart(i, o = {}) {
      members[i] = await launch(i, o.freshData ? await tempDir('keynode-fleet-') : members[i]!.data);
    },
  };
}
