/**
 * Three (or n) containers as one fleet, each a real `keynode start` process. Where this process may make
 * network namespaces (root, `ip` present, KEYNODE_TEST_NETNS not 0), each container runs in its own
 * namespace (`ip netns exec`), joined by veth pairs to a bridge on a private subnet 10.213.X.0/24 that
 * exists only on this machine (X chosen free per run); the test process reaches them through the bridge's
 * address. Otherwise they run on loopback ports. The mode and why are printed.
 *
 * In namespace mode the members also share a DNS name (`/etc/netns/<ns>/hosts`, which `ip netns exec`
 * mounts over /etc/hosts) that resolves to all of them, as a Kubernetes headless Service does, so
 * `dns:<name>:<port>` peers are exercised for real.
 *
 * Everything made is removed after the test file (afterAll) and, failing that, when this process exits;
 * a run that was killed outright leaves names with its pid, which the next run removes.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { Identity } from 'keynode';
import { defer, tempDir } from './containers.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const PREFIX = 'knf';
const PORT = 7070;

export interface FleetMember {
  url: string;
  data: string;
  operator: Identity;
  /** The container's process (in its namespace in netns mode). */
  child: ResultPromise;
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
  /** Runs a command inside member i's network namespace (netns mode), or here. */
  exec(i: number, cmd: string, args: string[]): ResultPromise;
  /** Starts member i again on the same data (after kill9/stop). */
  restart(i: number): Promise<void>;
}

interface Plan {
  mode: 'netns' | 'loopback';
  why: string;
}

let planned: Plan | undefined;

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

/** Namespaces, bridges and hosts files left by runs of this harness whose process no longer exists. */
function sweepStale(): void {
  let names: string[] = [];
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`${PREFIX}-`));
  } catch {
    return;
  }
  for (const ns of names) {
    const pid = Number(ns.split('-')[1]);
    if (!Number.isSafeInteger(pid) || alive(pid)) continue;
    tryIp('netns', 'del', ns);
    rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
  }
  try {
    for (const link of execFileSync('ip', ['-o', 'link', 'show', 'type', 'bridge'], { encoding: 'utf8' }).split('\n')) {
      const name = /^\d+: ([^:@]+)/.exec(link)?.[1];
      const pid = Number(name?.match(new RegExp(`^${PREFIX}b(\\d+)x`))?.[1]);
      if (name && Number.isSafeInteger(pid) && pid > 0 && !alive(pid)) tryIp('link', 'del', name);
    }
  } catch {
    // no bridges to look at
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function plan(): Plan {
  if (planned) return planned;
  if (process.env.KEYNODE_TEST_NETNS === '0') return (planned = { mode: 'loopback', why: 'KEYNODE_TEST_NETNS=0' });
  if (process.platform !== 'linux') return (planned = { mode: 'loopback', why: `network namespaces are Linux only (this is ${process.platform})` });
  if (process.getuid?.() !== 0) return (planned = { mode: 'loopback', why: 'network namespaces need root, and this runs as uid ' + String(process.getuid?.()) });
  const probe = `${PREFIX}-${process.pid}-probe`;
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
  throw new Error('no free 10.213.X.0/24 subnet for the fleet test');
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

interface Network {
  addresses: string[];
  namespaces: string[];
  dnsName: string;
  remove(): void;
}

function makeNetwork(n: number): Network {
  sweepStale();
  const tag = `${process.pid}x${Math.floor(Math.random() * 1e4)}`;
  const bridge = `${PREFIX}b${tag}`.slice(0, 15);
  const x = freeSubnet();
  const namespaces = Array.from({ length: n }, (_, i) => `${PREFIX}-${process.pid}-${tag}-${i}`);
  const addresses = namespaces.map((_, i) => `10.213.${x}.${i + 1}`);
  const dnsName = `fleet-${tag}.keynode.test`;
  const made: (() => void)[] = [];
  const remove = () => {
    for (const f of made.splice(0).reverse()) f();
  };
  process.once('exit', remove);
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    made.push(() => tryIp('link', 'del', bridge));
    ip('addr', 'add', `10.213.${x}.254/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    namespaces.forEach((ns, i) => {
      ip('netns', 'add', ns);
      made.push(() => tryIp('netns', 'del', ns));
      const outside = `${PREFIX}v${tag}${i}`.slice(-15);
      const inside = `${PREFIX}p${tag}${i}`.slice(-15);
      ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
      made.push(() => tryIp('link', 'del', outside));
      ip('link', 'set', inside, 'netns', ns);
      ip('link', 'set', outside, 'master', bridge, 'up');
      ip('-n', ns, 'addr', 'add', `${addresses[i]}/24`, 'dev', inside);
      ip('-n', ns, 'link', 'set', inside, 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      // `ip netns exec` mounts /etc/netns/<ns>/* over /etc: this name resolves to every member inside them.
      const dir = `/etc/netns/${ns}`;
      mkdirSync(dir, { recursive: true });
      made.push(() => rmSync(dir, { recursive: true, force: true }));
      writeFileSync(join(dir, 'hosts'), `127.0.0.1 localhost\n${addresses.map((a) => `${a} ${dnsName}`).join('\n')}\n`);
    });
  } catch (e) {
    remove();
    process.off('exit', remove);
    throw e;
  }
  return {
    addresses,
    namespaces,
    dnsName,
    remove() {
      remove();
      process.off('exit', remove);
    },
  };
}

export interface FleetOptions {
  n?: number;
  /** Extra `keynode start` flags for every member. */
  flags?: string[];
  /** Peers by the shared DNS name (netns mode only) instead of by URL. */
  dns?: boolean;
  /** Peers of member i (default: every other member). */
  peers?: (urls: string[], i: number) => string[];
}

/** Starts the fleet; resolves once every member is listening. */
export async function startFleet(options: FleetOptions = {}): Promise<TestFleet> {
  const n = options.n ?? 3;
  let { mode, why } = plan();
  let net: Network | undefined;
  if (mode === 'netns') {
    try {
      net = makeNetwork(n);
      defer(async () => net!.remove());
    } catch (e) {
      mode = 'loopback';
      why = `making the namespaces failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`;
    }
  }
  process.stderr.write(`fleet harness: ${mode} mode (${why})\n`);
  const hosts = net ? net.addresses.map((a) => ({ host: a, port: PORT })) : await Promise.all(Array.from({ length: n }, async () => ({ host: '127.0.0.1', port: await freePort() })));
  const urls = hosts.map((h) => `http://${h.host}:${h.port}`);
  const datas = await Promise.all(hosts.map(() => tempDir('keynode-fleet-')));
  const dnsPeers = net ? `dns:${net.dnsName}:${PORT}` : undefined;
  const members: FleetMember[] = [];
  const prefix = (i: number) => (net ? ['ip', ['netns', 'exec', net.namespaces[i]!, process.execPath]] as const : [process.execPath, []] as const);

  const launch = async (i: number): Promise<FleetMember> => {
    const peers = options.dns && dnsPeers ? [dnsPeers] : (options.peers?.(urls, i) ?? urls.filter((_, j) => j !== i));
    const [cmd, pre] = prefix(i);
    const args = [...pre, CLI, 'start', '--host', hosts[i]!.host, '--port', String(hosts[i]!.port), '--data', datas[i]!, '--public-url', urls[i]!, '--log-level', 'info', '--pool-min', '1', ...(peers.length ? ['--peers', peers.join(',')] : []), ...(options.flags ?? [])];
    const child = execa(cmd, args, { buffer: false, reject: false, cleanup: true, stdin: 'ignore', env: { KEYNODE_MIN_PERIOD_MS: '10' } });
    defer(async () => {
      child.kill('SIGKILL');
      await child;
    });
    let out = '';
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('"msg":"keynode container started"')) {
          child.stdout!.off('data', onData);
          child.stdout!.on('data', (c: Buffer) => (out = (out + c.toString()).slice(-1_000_000)));
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      void child.then((r) => reject(new Error(`fleet member ${i} exited before it started (${r.exitCode ?? r.signal}): ${err}`)));
    });
    const operator = await Identity.load(join(datas[i]!, 'operator.key'));
    return {
      url: urls[i]!,
      data: datas[i]!,
      operator,
      child,
      logs: () => out,
      async kill9() {
        child.kill('SIGKILL');
        await child;
      },
      async stop() {
        child.kill('SIGTERM');
        await child;
      },
    };
  };

  members.push(...(await Promise.all(hosts.map((_, i) => launch(i)))));
  return {
    mode,
    why,
    members,
    ...(dnsPeers ? { dnsPeers } : {}),
    exec(i, cmd, args) {
      return net ? execa('ip', ['netns', 'exec', net.namespaces[i]!, cmd, ...args], { reject: false }) : execa(cmd, args, { reject: false });
    },
    async restart(i) {
      members[i] = await launch(i);
    },
  };
}

/** True when stale names of this harness are present (for a test that checks the cleanup). */
export function leftovers(pid = process.pid): string[] {
  const out: string[] = [];
  try {
    out.push(...execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!).filter((ns) => ns.startsWith(`${PREFIX}-${pid}-`)));
  } catch {
    // no ip
  }
  if (existsSync('/etc/netns')) out.push(...readdirSync('/etc/netns').filter((d) => d.startsWith(`${PREFIX}-${pid}-`)));
  return out;
}
