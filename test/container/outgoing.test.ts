/**
 * Calls this container makes to a peer container for its nodes (ctx.at, lease checks) share the sockets to
 * that peer. One tenant holding many slow calls there must not make another tenant's calls to the same peer
 * wait: each tenant has a bounded share, and what it asks beyond that waits or is refused, for it alone.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type Client, type NodeHandle } from 'keynode';
import type { ContainerOptions } from 'keynode/container';
import { defer, startContainer, until, type TestContainer } from '../helpers/containers.js';

/** A server that holds every request unanswered until `release()`, then answers everything at once. */
async function hangServer(): Promise<{ origin: string; received: () => number; release: () => void; releaseOne: () => void }> {
  const held: ServerResponse[] = [];
  let received = 0;
  let released = false;
  const answer = (res: ServerResponse) => {
    res.statusCode = 404;
    res.end();
  };
  const server = createServer((req, res) => {
    received++;
    req.resume();
    if (released) answer(res);
    else held.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const release = () => {
    released = true;
    for (const res of held.splice(0)) answer(res);
  };
  defer(async () => {
    release();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const releaseOne = () => {
    const res = held.shift();
    if (res) answer(res);
  };
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received: () => received, release, releaseOne };
}

/** A tenant: a principal with its own budget on the container, and a client signed by it. */
async function tenant(c: TestContainer): Promise<Client> {
  const identity = Identity.generate();
  await c.client.grant(identity, { maxNodes: 10, maxAwake: 10, memoryMB: 1024 });
  const client = await connect(c.url, { identity });
  defer(() => client.close());
  return client;
}

/** A peer B with a node that answers at once and one whose evals wait on `hang` (queued one after another). */
async function peer(hang: string): Promise<{ b: TestContainer; healthy: NodeHandle; slow: NodeHandle; slowCall: string }> {
  const b = await startContainer();
  const healthy = await b.client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
  const slow = await b.client.spawn({ lifetime: Lifetime.root(), acl: ['public'], sandbox: { contacts: 'any', timeoutMs: 60_000 } });
  // A node ID nobody has here, so the call leaves for the hanging server.
  return { b, healthy, slow, slowCall: `${hang}/${Identity.generate().id}` };
}

/** Inside the abuser: `n` calls at once to the slow node; how each ended. */
function flood(client: Client, abuser: NodeHandle, slow: string, hang: string, n: number): Promise<string[]> {
  return client.at(
    abuser,
    async (ctx, target: string, h: string, count: number) => {
      const calls = Array.from({ length: count }, () => ctx.at(target, (c, to: string) => c.at(to, () => 0).then(() => 'answered', () => 'released'), h));
      return (await Promise.allSettled(calls)).map((r) => (r.status === 'fulfilled' ? String(r.value) : String((r.reason as { code?: string }).code)));
    },
    slow,
    hang,
    n,
  );
}

function tally(results: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) out[r] = (out[r] ?? 0) + 1;
  return out;
}

async function timed<T>(p: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await p();
  return [v, performance.now() - t0];
}

describe('outgoing calls to a peer container are shared fairly between tenants', () => {
  it("one tenant's 64 slow calls to a peer do not hold up another tenant's calls and lease checks there", async () => {
    const hang = await hangServer();
    const { b, healthy, slow, slowCall } = await peer(hang.origin);
    const a = await startContainer();
    const bad = await tenant(a);
    const good = await tenant(a);
    const abuser = await bad.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [slow.url], timeoutMs: 60_000 } });
    const victim = await good.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [healthy.url] } });
    const callHealthy = () => good.at(victim, (ctx, t: string) => ctx.at(t, (c) => c.here.id), healthy.url);

    // Unloaded: the victim's round trip through A to B, after a warm-up.
    for (let i = 0; i < 3; i++) await callHealthy();
    const unloaded: number[] = [];
    for (let i = 0; i < 10; i++) unloaded.push((await timed(callHealthy))[1]);
    const bound = Math.max(2 * Math.max(...unloaded), 1000);

    const abuse = flood(bad, abuser, slow.url, slowCall, 64);
    try {
      // Saturated: the slow node on B is stuck on its first call and at least 15 more wait behind it on B.
      await until(() => hang.received() >= 1 && b.container.runtime.stats().queued >= 15, 20_000, 'the abuser to fill its calls');

      for (let i = 0; i < 5; i++) {
        const [id, ms] = await timed(callHealthy);
        expect(id).toBe(healthy.id);
        expect({ call: i, ms: Math.round(ms), within: ms <= bound }).toEqual({ call: i, ms: Math.round(ms), within: true });
      }

      // The victim tenant's lease check on B renews meanwhile.
      const renewed: string[] = [];
      a.container.on('lease', (id: string, verdict: string) => verdict === 'renewed' && renewed.push(id));
      const leased = await good.spawn({ lifetime: Lifetime.leased(0.1, { node: healthy.url, fn: () => true }) });
      await until(() => renewed.includes(leased.id), 5000, "the victim's lease check to renew");
    } finally {
      hang.release();
    }
    // Nothing of the abuser's is lost: each of its calls ran once the slow node could answer.
    expect(tally(await abuse)).toEqual({ released: 64 });
  });

  it("past its share and its queue, a tenant's calls to a peer are refused with ERR_OVERLOADED; the rest run", async () => {
    const hang = await hangServer();
    const { b, slow, slowCall } = await peer(hang.origin);
    const options = { peerTenantRequests: 2, peerTenantQueue: 4 } as Partial<ContainerOptions>;
    const a = await startContainer(options);
    const bad = await tenant(a);
    const abuser = await bad.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [slow.url], timeoutMs: 60_000 } });

    const abuse = flood(bad, abuser, slow.url, slowCall, 40);
    try {
      // Two in flight (one running on B, one queued there); B never sees more.
      await until(() => hang.received() >= 1 && b.container.runtime.stats().queued >= 1, 20_000, 'the abuser to fill its share');
      expect(b.container.runtime.stats().queued).toBe(1);
    } finally {
      hang.release();
    }
    expect(tally(await abuse)).toEqual({ released: 6, ERR_OVERLOADED: 34 });
    // The refusal is the abuser's alone, and short-lived: with its calls done it can call again.
    const again = await bad.at(abuser, (ctx, t: string) => ctx.at(t, (c) => c.here.id), slow.url);
    expect(again).toBe(slow.id);
  });

  it('when every socket to a peer is busy, the next one freed goes to the tenant with the fewest calls there', async () => {
    const hang = await hangServer();
    const { b, healthy, slow, slowCall } = await peer(hang.origin);
    const a = await startContainer({ peerConnections: 2, peerTenantRequests: 2, peerTenantQueue: 8 } as Partial<ContainerOptions>);
    const bad = await tenant(a);
    const good = await tenant(a);
    const abuser = await bad.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [slow.url], timeoutMs: 60_000 } });
    const victim = await good.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [healthy.url], timeoutMs: 20_000 } });
    await good.at(victim, () => 'awake');

    const abuse = flood(bad, abuser, slow.url, slowCall, 6);
    try {
      // Both sockets are the abuser's (one call hangs on B, one waits there behind it), four more wait here.
      await until(() => hang.received() >= 1 && b.container.runtime.stats().queued >= 1 && a.container.runtime.stats().peerCallsWaiting === 4, 20_000, 'the abuser to hold every socket');
      const call = good.at(victim, (ctx, t: string) => ctx.at(t, (c) => c.here.id), healthy.url);
      await until(() => a.container.runtime.stats().peerCallsWaiting === 5, 20_000, "the victim's call to wait for a socket");
      // One abuser call ends: its socket goes to the victim, not to the abuser's next call (which would hang).
      hang.releaseOne();
      expect(await call).toBe(healthy.id);
    } finally {
      hang.release();
    }
    expect(tally(await abuse)).toEqual({ released: 6 });
    expect(a.container.runtime.stats()).toMatchObject({ peerCallsInFlight: 0, peerCallsWaiting: 0 });
  });
});
