/**
 * Membership against hostile and changing peers, with containers in this process on loopback addresses:
 * addresses of a `dns:` name that name someone else's URL, a peer whose ID changes at its URL, load
 * reports with absurd numbers, and how much a peer that lies about its load can draw by placement.
 */
import { createServer } from 'node:net';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type KeynodeError, type LoadReport } from 'keynode';
import { Container, normalizeOptions, optionsFromEnv } from 'keynode/container';
import { checkLoadReport, MAX_LOAD_COUNT, type Envelope } from '../../dist/protocol/index.js';
import { Membership } from '../../dist/container/membership/membership.js';
import { RemotePeers } from '../../dist/container/edge/remote.js';
import { Operations } from '../../dist/container/edge/operations.js';
import { Placer } from '../../dist/client/placement.js';
import { defer, startContainer, tempDir, until } from '../helpers/containers.js';
import { hangingServer } from '../helpers/hanging-server.js';

async function freePort(host: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, host, r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

function lines(): { logger: ReturnType<typeof pino>; seen: Record<string, unknown>[] } {
  const seen: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void seen.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, seen };
}

const honest = (over: Partial<LoadReport> = {}): Record<string, unknown> => ({
  containerId: Identity.generate().id, url: 'http://10.0.0.1:7070', awake: 1, maxAwake: 10, active: 0, queued: 0, memoryMB: 64, maxMemoryMB: 1024, nodesLeft: 100, members: [], ...over,
});

describe('load reports are hostile input', () => {
  it.each([
    ['a negative count', { awake: -1 }],
    ['a fraction', { queued: 0.5 }],
    ['an absurd count', { nodesLeft: MAX_LOAD_COUNT * 10 }],
    ['Infinity', { maxAwake: Infinity }],
    ['a string', { active: '3' }],
    ['more awake than its capacity', { awake: 11 }],
    ['more memory than its capacity', { memoryMB: 2048 }],
    ['a member that is not an origin', { members: [{ url: 'javascript:alert(1)', state: 'up' }] }],
    ['a member of unknown state', { members: [{ url: 'http://a:1', state: 'leader' }] }],
    ['too many members', { members: Array.from({ length: 257 }, (_, i) => ({ url: `http://h${i}:1`, state: 'up' })) }],
    ['a member with a malformed load', { members: [{ url: 'http://a:1', state: 'up', load: { awake: 1e300 } }] }],
    ['a room with absurd numbers', { room: { maxNodes: 1e300, nodes: 0, maxAwake: 1, awake: 0 } }],
    ['no containerId', { containerId: 'me' }],
  ])('refuses %s, whole, with ERR_BAD_REPLY', (_, over) => {
    let err: KeynodeError | undefined;
    try {
      checkLoadReport(honest(over as Partial<LoadReport>), 'http://peer:1');
    } catch (e) {
      err = e as KeynodeError;
    }
    expect(err?.code).toBe('ERR_BAD_REPLY');
  });

  it('refuses a report from another container than the session proved', () => {
    const report = honest();
    expect(() => checkLoadReport(report, 'http://peer:1', Identity.generate().id)).toThrow(/not believed/);
    expect(checkLoadReport(report, 'http://peer:1', report.containerId as never).awake).toBe(1);
  });

  it('a member that lies about its load draws at most its share of the random pairs, never every spawn', async () => {
    const urls = ['http://a.test:1', 'http://b.test:1', 'http://liar.test:1'];
    const placed = new Map<string, number>();
    const ask = async (url: string): Promise<LoadReport> => {
      const nodes = url.includes('liar') ? 0 : (placed.get(url) ?? 0);
      return checkLoadReport(honest({ url, room: { maxNodes: 1_000_000, nodes, maxAwake: 10, awake: 0 } }), url);
    };
    const placer = new Placer(urls, ask, 0);
    for (let i = 0; i < 300; i++) {
      for (const [url, n] of await placer.place(10)) placed.set(url, (placed.get(url) ?? 0) + n);
    }
    const liar = placed.get('http://liar.test:1') ?? 0;
    // Two of three members are drawn per node: the liar is in 2/3 of the pairs and wins every one it is in.
    expect(liar / 3000).toBeLessThan(0.72);
    expect(liar / 3000).toBeGreaterThan(0.5);
  });

  it('a peer whose report is absurd is marked down, and a client refuses the same report', async () => {
    const liar = await startContainer();
    const observer = await startContainer({ peers: [liar.url], fleetRefreshMs: 100 });
    await until(() => observer.container.members()[0]?.state === 'up', 20_000, 'the liar to be up first');
    // The liar's container answers `load` with nonsense from here on (its own code, run by its operator).
    const handle = Operations.prototype.handle;
    Operations.prototype.handle = async function (this: Operations, env: Envelope, pathId) {
      const value = await handle.call(this, env, pathId);
      return env.type === 'load' && env.to === liar.container.id ? { ...(value as object), awake: 2 ** 60, queued: -3 } : value;
    };
    defer(async () => void (Operations.prototype.handle = handle));
    await until(() => observer.container.members()[0]?.state === 'down', 20_000, 'the absurd report to be refused');
    expect(observer.container.members()[0]!.error).toMatch(/ERR_BAD_REPLY.*awake/);
    const err = (await observer.client.load(liar.url).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_BAD_REPLY');
  });
});

describe('membership', () => {
  it('a dns: name is resolved to addresses; each is asked its URL, and whoever answers at that URL is the member', async () => {
    const port = await freePort('127.0.0.2');
    const b = await startContainer({ host: '127.0.0.2', port });
    const c = await startContainer({ host: '127.0.0.3', port });
    // An address of the name that claims to be c.
    const d = await startContainer({ host: '127.0.0.4', port, publicUrl: c.url });
    const self = await startContainer();
    const { logger } = lines();
    const remote = new RemotePeers(1 << 20, { total: 16, perTenant: 4, queue: 16 });
    defer(() => remote.close());
    let addresses = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.9'];
    const membership = new Membership({
      self: { id: self.container.id, url: self.url }, peers: [`dns:fleet.keynode.test:${port}`], identity: self.operator, remote, refreshMs: 100_000, resolveMs: 0, logger,
      lookup: async (name: string) => {
        expect(name).toBe('fleet.keynode.test');
        return addresses;
      },
    });
    defer(async () => membership.close());
    await membership.refresh();
    await membership.refresh();
    const members = membership.members();
    expect(members.map((m) => [m.url, m.state, m.containerId]).sort()).toEqual([
      [b.url, 'up', b.container.id],
      [c.url, 'up', c.container.id],
    ].sort());
    expect(members.every((m) => m.via === `dns:fleet.keynode.test:${port}`)).toBe(true);
    expect(membership.peerUrls().sort()).toEqual([b.url, c.url].sort());
    void d;

    // A pod scaled away: its address is no longer in the answer, and it is no longer a member.
    addresses = ['127.0.0.3'];
    await membership.refresh();
    expect(membership.members().map((m) => m.url)).toEqual([c.url]);
    // A name that fails to resolve for a moment keeps what it had.
    addresses = undefined as never;
    await membership.refresh();
    expect(membership.peerUrls()).toEqual([c.url]);
  });

  it('a peer whose container ID changes at its URL is refused, with a log line and a metric; its own entry is skipped', async () => {
    const port = await freePort('127.0.0.1');
    const first = await Container.start({ host: '127.0.0.1', port, data: await tempDir(), logLevel: 'silent', poolMin: 0 });
    const peerUrl = first.url;
    const { logger, seen } = lines();
    const observerData = await tempDir();
    const observerPort = await freePort('127.0.0.1');
    const observerUrl = `http://127.0.0.1:${observerPort}`;
    // The same list on every container: its own URL in it is skipped.
    const observer = await Container.start({ port: observerPort, data: observerData, poolMin: 0, peers: [peerUrl, observerUrl], fleetRefreshMs: 100 }, logger);
    defer(() => observer.close());
    await until(() => observer.members().length === 1 && observer.members()[0]!.state === 'up', 20_000, 'the peer up');
    expect(observer.members()[0]!.containerId).toBe(first.id);

    await first.close();
    await until(() => observer.members()[0]!.state === 'down', 20_000, 'the peer down');
    const impostor = await Container.start({ host: '127.0.0.1', port, data: await tempDir(), logLevel: 'silent', poolMin: 0 });
    defer(() => impostor.close());
    await until(() => observer.members()[0]!.state === 'refused', 20_000, 'the new ID refused');
    expect(observer.members()[0]!.error).toContain(impostor.id);
    expect(observer.peerUrls()).toEqual([]);
    expect(seen.filter((l) => /another container ID than the one pinned/.test(String(l.msg)))).toHaveLength(1);
    const metrics = await (await fetch(`${observerUrl}/metrics`)).text();
    expect(metrics).toContain(`keynode_peer_identity_refusals_total{peer="${peerUrl}"} 1`);
    expect(metrics).toMatch(/keynode_fleet_members\{state="refused"\} 1/);

    // The pin holds for every session to that URL, not only membership's: a node's ctx.at there is refused
    // before the call (signed as the node, carrying its data) reaches the impostor.
    const asObserver = await connect(observer.url, { identity: observer.operator });
    const asImpostor = await connect(impostor.url, { identity: impostor.operator });
    defer(async () => {
      await asObserver.close();
      await asImpostor.close();
    });
    const caller = await asObserver.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any' } });
    const there = await asImpostor.spawn({ lifetime: Lifetime.root(), acl: [caller.url] });
    const err = (await asObserver.at(caller, (ctx, u: string) => ctx.at(u, () => 'reached'), there.url).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_BAD_REPLY');
    expect(err.message).toContain(impostor.id);
  });

  it('with peerIds configured, only those container IDs are members, even on first contact', async () => {
    const b = await startContainer();
    const c = await startContainer();
    const { logger, seen } = lines();
    const observer = await Container.start({ port: 0, data: await tempDir(), poolMin: 0, peers: [b.url, c.url], peerIds: [b.container.id], fleetRefreshMs: 100 }, logger);
    defer(() => observer.close());
    await until(() => observer.members().filter((m) => m.state !== 'down').length === 2, 20_000, 'both peers judged');
    const by = new Map(observer.members().map((m) => [m.url, m]));
    expect(by.get(b.url)!.state).toBe('up');
    expect(by.get(c.url)!.state).toBe('refused');
    expect(by.get(c.url)!.error).toContain('not one of the configured peerIds');
    expect(seen.filter((l) => /not among the configured peerIds/.test(String(l.msg)))).toHaveLength(1);
    expect(observer.peerUrls()).toEqual([b.url]);
    // A node's ctx.at follows the same list: to the configured member, and never to the other one.
    const asObserver = await connect(observer.url, { identity: observer.operator });
    defer(() => asObserver.close());
    const caller = await asObserver.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any' } });
    const onB = await b.client.spawn({ lifetime: Lifetime.root(), acl: [caller.url] });
    const onC = await c.client.spawn({ lifetime: Lifetime.root(), acl: [caller.url] });
    const call = (u: string) => asObserver.at(caller, (ctx, t: string) => ctx.at(t, () => 'reached'), u);
    expect(await call(onB.url)).toBe('reached');
    const err = (await call(onC.url).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_BAD_REPLY');
    expect(err.message).toContain(c.container.id);
    expect(() => normalizeOptions({ peerIds: ['not-an-id'] })).toThrow(/peerIds/);
    expect(optionsFromEnv({ KEYNODE_PEER_IDS: `${b.container.id},${c.container.id}` }).peerIds).toEqual([b.container.id, c.container.id]);
  });

  it('a member that accepts and never answers is marked down by its peers and skipped by fleet clients, without holding up the rest', async () => {
    const hanging = await hangingServer();
    const real = await startContainer();
    const observer = await startContainer({ peers: [hanging.url, real.url], fleetRefreshMs: 200 });
    await until(() => {
      const by = new Map(observer.container.members().map((m) => [m.url, m.state]));
      return by.get(real.url) === 'up' && by.get(hanging.url) === 'down' && hanging.received > 0;
    }, 30_000, 'the real peer up and the hanging one down');
    // Rounds go on while the hanging peer holds its requests: the real peer's report stays fresh.
    const age = () => observer.container.members().find((m) => m.url === real.url)!.ageMs!;
    await until(() => age() < 1000, 10_000, 'a fresh report from the real peer');

    const tenant = Identity.generate();
    await real.client.grant(tenant, { maxNodes: 10, maxAwake: 2, memoryMB: 256 });
    const client = await connect([real.url, hanging.url], { identity: tenant, loadMaxAgeMs: 100 });
    defer(() => client.close());
    const t0 = Date.now();
    const nodes = await client.spawnMany(4, { lifetime: Lifetime.root() });
    expect(nodes.map((n) => new URL(n.url).origin)).toEqual(Array(4).fill(real.url));
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(client.members().find((m) => m.url === hanging.url)!.skip).toMatch(/ERR_ABORTED|ERR_UNAVAILABLE/);
  });

  it('a fleet client given one URL learns the other members from it, and places on all of them', async () => {
    const ports = await Promise.all([1, 2, 3].map(() => freePort('127.0.0.1')));
    const urls = ports.map((p) => `http://127.0.0.1:${p}`);
    const members = await Promise.all(ports.map((port, i) => startContainer({ port, peers: urls.filter((_, j) => j !== i), fleetRefreshMs: 100 })));
    await until(() => members.every((m) => m.container.peerUrls().length === 2), 20_000, 'every member to see the others');
    const tenant = Identity.generate();
    for (const m of members) await m.client.grant(tenant, { maxNodes: 100, maxAwake: 5, memoryMB: 512 });
    const client = await connect(urls[0]!, { identity: tenant, fleet: true, loadMaxAgeMs: 50 });
    defer(() => client.close());
    await client.refreshMembers();
    await client.refreshMembers();
    expect(client.members().map((m) => m.url).sort()).toEqual([...urls].sort());
    const spawned = await client.spawnMany(90, { lifetime: Lifetime.root() });
    expect(new Set(spawned.map((h) => new URL(h.url).origin))).toEqual(new Set(urls));
    // Through another name for one member (as a Service URL is): the client moves to the URL that member
    // states for itself, and the name it came through is not taken for a member.
    const viaService = await connect(`http://localhost:${ports[0]}`, { identity: tenant, fleet: true, loadMaxAgeMs: 50 });
    defer(() => viaService.close());
    expect(viaService.url).toBe(urls[0]);
    await viaService.refreshMembers();
    await viaService.refreshMembers();
    expect(viaService.members().map((m) => m.url).sort()).toEqual([...urls].sort());
    // A one-container client stays where it connected.
    const plain = await connect(urls[1]!, { identity: tenant });
    defer(() => plain.close());
    expect(new URL((await plain.spawn({ lifetime: Lifetime.root() })).url).origin).toBe(urls[1]);
  });
});
