/**
 * @module bench/fleet-net
 * Several containers on one machine as if on several hosts, for the fleet tests (test/helpers/fleet.ts) and
 * the fleet benchmark. Where this process may make network namespaces (Linux, root, `ip`; not turned off
 * with KEYNODE_TEST_NETNS=0), each container runs in its own (`ip netns exec`), joined by veth pairs to a
 * bridge on a private subnet 10.213.X.0/24 that exists only on this machine (X chosen free per run); this
 * process reaches them through the bridge's address. Otherwise they run on loopback ports. Callers print
 * which mode ran and why.
 *
 * In namespace mode the members also share a DNS name (`/etc/netns/<ns>/hosts`, which `ip netns exec`
 * mounts over /etc/hosts) that resolves to all of them, as a Kubernetes headless Service does.
 *
 * Names carry this process's pid: whatever a run that was killed outright left behind (processes in its
 * namespaces included) is removed by the next run (`sweepStale`). Everything else is removed by `remove()`
 * and, failing that, when this process exits or is stopped by SIGINT, SIGTERM or SIGHUP.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
/** Prefix of every namespace, bridge and veth this module makes. */
export const NET_PREFIX = 'knf';
export const MEMBER_PORT = 7070;

export interface NetPlan {
  mode: 'netns' | 'loopback';
  why: string;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function tryIp(...args: string[]): void {
  try {
    ip(...args);
  } catch {
    // already gone
  }
}

/** Synchronous cleanups for when this process ends without its callers' own (afterAll, finally) having run. */
const atExitJobs = new Set<() => void>();
let hooked = false;

function runAtExit(): void {
  for (const f of [...atExitJobs].reverse()) {
    try {
      f();
    } catch {
      // the next one still runs
    }
  }
  atExitJobs.clear();
}

function atExit(f: () => void): () => void {
  atExitJobs.add(f);
  if (!hooked) {
    hooked = true;
    process.once('exit', runAtExit);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      const onSignal = () => {
        runAtExit();
        // Nobody else handles it: end as the signal would have, now that nothing is left behind.
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
      };
      process.once(signal, onSignal);
    }
  }
  return () => void atExitJobs.delete(f);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Namespaces, bridges and hosts files of earlier runs whose process no longer exists. */
export function sweepStale(): void {
  let names: string[] = [];
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`${NET_PREFIX}-`));
  } catch {
    return;
  }
  for (const ns of names) {
    const pid = Number(ns.split('-')[1]);
    if (!Number.isSafeInteger(pid) || alive(pid)) continue;
    // Containers of a run killed outright outlive it in their namespace: they go first.
    try {
      for (const p of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean)) process.kill(Number(p), 'SIGKILL');
    } catch {
      // none left
    }
    tryIp('netns', 'del', ns);
    rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
  }
  try {
    for (const link of execFileSync('ip', ['-o', 'link', 'show', 'type', 'bridge'], { encoding: 'utf8' }).split('\n')) {
      const name = /^\d+: ([^:@]+)/.exec(link)?.[1];
      const pid = Number(name?.match(new RegExp(`^${NET_PREFIX}b(\\d+)x`))?.[1]);
      if (name && Number.isSafeInteger(pid) && pid > 0 && !alive(pid)) tryIp('link', 'del', name);
    }
  } catch {
    // no bridges to look at
  }
}

let planned: NetPlan | undefined;

/** Which mode this machine allows, and why (probed once per process). */
export function planNetwork(): NetPlan {
  if (planned) return planned;
  if (process.env.KEYNODE_TEST_NETNS === '0') return (planned = { mode: 'loopback', why: 'KEYNODE_TEST_NETNS=0' });
  if (process.platform !== 'linux') return (planned = { mode: 'loopback', why: `network namespaces are Linux only (this is ${process.platform})` });
  if (process.getuid?.() !== 0) return (planned = { mode: 'loopback', why: `network namespaces need root, and this runs as uid ${String(process.getuid?.())}` });
  const probe = `${NET_PREFIX}-${process.pid}-probe`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
  } catch (e) {
    return (planned = { mode: 'loopback', why: `\`ip netns add\` failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}` });
  }
  return (planned = { mode: 'netns', why: 'running as root with `ip netns`' });
}

/** A third octet for 10.213.X.0/24 that no interface here uses. */
function freeSubnet(): number {
  const used = execFileSync('ip', ['-4', '-o', 'addr'], { encoding: 'utf8' });
  for (let tries = 0; tries < 100; tries++) {
    const x = 1 + Math.floor(Math.random() * 250);
    if (!used.includes(`10.213.${x}.`)) return x;
  }
  throw new Error('no free 10.213.X.0/24 subnet');
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, host, r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

export interface Network {
  addresses: string[];
  namespaces: string[];
  /** Resolves, inside the namespaces, to every address. */
  dnsName: string;
  remove(): void;
}

/** n namespaces on a bridge; throws (having removed what it made) when any step fails. */
export function makeNetwork(n: number): Network {
  sweepStale();
  const tag = `${process.pid}x${Math.floor(Math.random() * 1e4)}`;
  const bridge = `${NET_PREFIX}b${tag}`.slice(0, 15);
  const x = freeSubnet();
  const namespaces = Array.from({ length: n }, (_, i) => `${NET_PREFIX}-${process.pid}-${tag}-${i}`);
  const addresses = namespaces.map((_, i) => `10.213.${x}.${i + 1}`);
  const dnsName = `fleet-${tag}.keynode.test`;
  const made: (() => void)[] = [];
  const remove = () => {
    for (const f of made.splice(0).reverse()) f();
  };
  const unhook = atExit(remove);
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    made.push(() => tryIp('link', 'del', bridge));
    ip('addr', 'add', `10.213.${x}.254/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    namespaces.forEach((ns, i) => {
      ip('netns', 'add', ns);
      made.push(() => tryIp('netns', 'del', ns));
      const outside = `${NET_PREFIX}v${tag}${i}`.slice(-15);
      const inside = `${NET_PREFIX}p${tag}${i}`.slice(-15);
      ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
      made.push(() => tryIp('link', 'del', outside));
      ip('link', 'set', inside, 'netns', ns);
      ip('link', 'set', outside, 'master', bridge, 'up');
      ip('-n', ns, 'addr', 'add', `${addresses[i]}/24`, 'dev', inside);
      ip('-n', ns, 'link', 'set', inside, 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      const dir = `/etc/netns/${ns}`;
      mkdirSync(dir, { recursive: true });
      made.push(() => rmSync(dir, { recursive: true, force: true }));
      writeFileSync(join(dir, 'hosts'), `127.0.0.1 localhost\n${addresses.map((a) => `${a} ${dnsName}`).join('\n')}\n`);
    });
  } catch (e) {
    remove();
    unhook();
    throw e;
  }
  return {
    addresses,
    namespaces,
    dnsName,
    remove() {
      remove();
      unhook();
    },
  };
}

/** Where the members of a fleet listen: namespaces when allowed (and they could be made), else loopback ports. */
export async function fleetHosts(n: number): Promise<NetPlan & { net?: Network; hosts: { host: string; port: number }[] }> {
  let { mode, why } = planNetwork();
  if (mode === 'netns') {
    try {
      const net = makeNetwork(n);
      return { mode, why, net, hosts: net.addresses.map((host) => ({ host, port: MEMBER_PORT })) };
    } catch (e) {
      mode = 'loopback';
      why = `making the namespaces failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`;
    }
  }
  return { mode, why, hosts: await Promise.all(Array.from({ length: n }, async () => ({ host: '127.0.0.1', port: await freePort() }))) };
}

export interface MemberProcess {
  url: string;
  child: ChildProcess;
  /** stdout so far (JSON log lines), the last MB of it. */
  logs(): string;
  kill(signal: NodeJS.Signals): Promise<void>;
}

/** `keynode start` for one member (inside namespace `ns` when given); resolves once it listens. */
export async function launchMember(o: { ns?: string; host: string; port: number; data: string; peers: string[]; flags?: string[]; env?: Record<string, string> }): Promise<MemberProcess> {
  const url = `http://${o.host}:${o.port}`;
  const args = [CLI, 'start', '--host', o.host, '--port', String(o.port), '--data', o.data, '--public-url', url, '--log-level', 'info', ...(o.peers.length ? ['--peers', o.peers.join(',')] : []), ...(o.flags ?? [])];
  const [cmd, argv] = o.ns ? ['ip', ['netns', 'exec', o.ns, process.execPath, ...args]] : [process.execPath, args];
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
  const exited = once(child, 'exit');
  const unhook = atExit(() => child.kill('SIGKILL'));
  void exited.then(unhook);
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-64_000)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out = (out + c.toString()).slice(-1_000_000);
      if (out.includes('"msg":"keynode container started"')) resolve();
    });
    void exited.then(([code, signal]) => reject(new Error(`the container at ${url} exited before it started (${String(code ?? signal)}): ${err}`)));
  });
  return {
    url,
    child,
    logs: () => out,
    async kill(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}
