/**
 * One tenant cannot stop everyone's deadlines. Each tenant's deadlines run in their own lane (a few at a
 * time), a lease check waits at most its leased node's own sandbox.timeoutMs, and a reset never waits for
 * the evals on its node. Against a real container, with a plain HTTP server that accepts and never answers
 * standing for a check URL that hangs.
 */
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type Client } from 'keynode';
import type { Container } from 'keynode/container';
import { defer, startContainer, until } from '../helpers/containers.js';
import { hangingServer } from '../helpers/hanging-server.js';

/** Deadline handlers one tenant may run at once (lifetimes/schedule.ts, PER_GROUP). */
const PER_TENANT = 4;
/** Far longer than any bound below: a check waiting this long holds its lane the whole test. */
const LONG_MS = 120_000;

async function tenant(url: string, operator: Client, maxNodes = 100): Promise<Client> {
  // Connections enough for every eval it keeps waiting at once.
  const c = await connect(url, { identity: Identity.generate(), connections: 256 });
  defer(() => c.close());
  await operator.grant(c.here, { maxNodes, maxAwake: 30, memoryMB: 30 * 64 });
  return c;
}

/**
 * Resolves with the time (ms since `from`) the container reports `event` for `id`; rejects after `ms`. With
 * `afterWake`, only an event after the node's next wake counts: listening before the eval that wakes it, a
 * reset of the node before that eval (its first period ran out while the eval was on its way) is not the one
 * wanted, and one right after the eval's commit (before its reply reaches this process) is not missed.
 */
function eventWithin(container: Container, event: 'destroy' | 'reset', id: string, from: number, ms: number, afterWake = false): Promise<number> {
  return new Promise((resolve, reject) => {
    let woke = !afterWake;
    const done = () => {
      clearTimeout(timer);
      container.off(event, on);
      container.off('wake', onWake);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no ${event} of ${id} within ${ms} ms`));
    }, ms);
    const onWake = (awake: string) => {
      if (awake === id) woke = true;
    };
    const on = (gone: string) => {
      if (gone !== id || !woke) return;
      done();
      resolve(Date.now() - from);
    };
    container.on('wake', onWake);
    container.on(event, on);
  });
}

/** How long, unloaded, a Leased node whose check says false takes to be destroyed, and a Resetting node to be reset. */
async function deadlineLatency(container: Container, c: Client, owner: { id: string; url: string }): Promise<{ destroy: number; reset: number }> {
  const start = Date.now();
  const leased = await c.spawn({ lifetime: Lifetime.leased(0.2, { node: owner, fn: () => false }) });
  const destroyed = eventWithin(container, 'destroy', leased.id, start, 30_000);
  const resetting = await c.spawn({ lifetime: Lifetime.resetting(0.2) });
  const setAt = Date.now();
  const reset = eventWithin(container, 'reset', resetting.id, setAt, 30_000, true);
  await c.at(resetting, (ctx) => ctx.ref('a').set(1));
  const [destroy, resetMs] = await Promise.all([destroyed, reset]);
  expect(await c.at(resetting, (ctx) => ctx.ref('a').get())).toBe(null);
  return { destroy, reset: resetMs };
}

describe('deadlines are fair across tenants', () => {
  it("a tenant's hanging lease checks fill only its own lane: other tenants' leases end and resets happen on time", async () => {
    const { url, client: operator, container } = await startContainer();
    const hang = await hangingServer();
    const abuser = await tenant(url, operator);
    const victim = await tenant(url, operator);
    const owner = await victim.spawn({ lifetime: Lifetime.root() });
    const unloaded = await deadlineLatency(container, victim, owner);

    // Twenty Leased nodes whose check URL accepts and never answers, each allowed to wait LONG_MS (its own
    // sandbox says so): before the fix sixteen of them held every deadline handler of the container.
    const check = `${hang.url}/${Identity.generate().id}`;
    await abuser.spawnMany(20, { lifetime: Lifetime.leased(0.05, { node: check, fn: () => true }), sandbox: { timeoutMs: LONG_MS } });
    await until(() => hang.open >= PER_TENANT, 30_000, 'the abuser\'s checks to hang');

    const loaded = await deadlineLatency(container, victim, owner);
    const bound = (ms: number) => Math.max(2 * ms, 3000);
    expect(loaded.destroy).toBeLessThanOrEqual(bound(unloaded.destroy));
    expect(loaded.reset).toBeLessThanOrEqual(bound(unloaded.reset));
    // The abuser's checks queue behind each other, a few at a time, never more.
    expect(hang.open).toBeLessThanOrEqual(PER_TENANT);
  });

  it("a lease check waits at most the leased node's own sandbox.timeoutMs, not the container's maximum", async () => {
    const { url, client: operator, container } = await startContainer({ leaseFailures: 3 });
    const hang = await hangingServer();
    const c = await tenant(url, operator);
    const check = `${hang.url}/${Identity.generate().id}`;
    const start = Date.now();
    const leased = await c.spawn({ lifetime: Lifetime.leased(0.1, { node: check, fn: () => true }), sandbox: { timeoutMs: 300 } });
    const verdicts: string[] = [];
    container.on('lease', (id, v) => id === leased.id && verdicts.push(v));
    // Three checks of 300 ms each and their backoff; before, the first alone waited 300 s.
    await eventWithin(container, 'destroy', leased.id, start, 20_000);
    expect(verdicts).toEqual(['failed', 'failed', 'failed']);
    await until(() => hang.open === 0, 10_000, 'the abandoned checks to close their requests');
  });

  it("a tenant's deadlines beyond its lane wait their turn and are all served: nothing is lost", async () => {
    const { url, client: operator, container } = await startContainer({ leaseFailures: 2 });
    const hang = await hangingServer();
    const c = await tenant(url, operator);
    const check = `${hang.url}/${Identity.generate().id}`;
    // Three times its lane's width, each check hanging for its node's 400 ms: most wait, moved to when the
    // lane has room and started as soon as it has.
    const leased = await c.spawnMany(3 * PER_TENANT, { lifetime: Lifetime.leased(0.05, { node: check, fn: () => true }), sandbox: { timeoutMs: 400 } });
    const failures = new Map<string, number>();
    container.on('lease', (id, v) => v === 'failed' && failures.set(id, (failures.get(id) ?? 0) + 1));
    const gone = new Set<string>();
    container.on('destroy', (id) => gone.add(id));
    await until(() => leased.every((n) => gone.has(n.id)), 60_000, 'every leased node to be destroyed');
    expect(leased.map((n) => failures.get(n.id))).toEqual(leased.map(() => 2));
    expect(hang.maxOpen).toBeLessThanOrEqual(PER_TENANT);
  });

  it('a reset never waits behind the evals on its node: sixteen busy nodes with long queues hold up no one', async () => {
    const { url, client: operator, container } = await startContainer();
    const hang = await hangingServer();
    const abuser = await tenant(url, operator);
    const victim = await tenant(url, operator);
    const owner = await victim.spawn({ lifetime: Lifetime.root() });
    const unloaded = await deadlineLatency(container, victim, owner);

    // Seventeen Resetting nodes, each with an eval that hangs (a call to the server that never answers) and
    // ten evals queued behind it. Before the fix each reset queued behind those evals, holding one of the
    // container's sixteen deadline handlers for as long as the queue lasted.
    const busy = await abuser.spawnMany(17, { lifetime: Lifetime.resetting(0.2), sandbox: { contacts: 'any', timeoutMs: LONG_MS } });
    const target = `${hang.url}/${Identity.generate().id}`;
    const hung = busy.map((n) =>
      abuser.at(n, async (ctx, to: string) => {
        await ctx.ref('a').set(1); // committed when the call breaks off and the eval returns
        await ctx.at(to, () => 1).catch(() => null);
      }, target),
    );
    const queued = busy.map((n) => Array.from({ length: 10 }, () => abuser.at(n, (ctx) => ctx.ref('a').get())));
    const hanging = (id: string) => {
      const n = container.supervisor.get(id);
      return n?.running !== undefined && n.queue.length >= 10;
    };
    await until(() => busy.every((n) => hanging(n.id)), 60_000, 'every busy node to hang with its queue full');

    // The same tenant's idle Resetting node, and another tenant's, are reset and leased on time meanwhile.
    const own = await abuser.spawn({ lifetime: Lifetime.resetting(0.2) });
    const ownSet = Date.now();
    const ownReset = eventWithin(container, 'reset', own.id, ownSet, 30_000, true);
    ownReset.catch(() => {}); // awaited below; a failure before that must not leave it unhandled
    await abuser.at(own, (ctx) => ctx.ref('a').set(1));
    const loaded = await deadlineLatency(container, victim, owner);
    const bound = (ms: number) => Math.max(2 * ms, 3000);
    expect(loaded.destroy).toBeLessThanOrEqual(bound(unloaded.destroy));
    expect(loaded.reset).toBeLessThanOrEqual(bound(unloaded.reset));
    expect(await ownReset).toBeLessThanOrEqual(bound(unloaded.reset));

    // An eval waiting is activity: the busy nodes were not reset under their queued evals.
    // Released until every hung eval has ended: a tenant has 16 calls to one peer in flight at most, so the
    // seventeenth reaches the server only once one of the others broke off.
    let settled = false;
    const ended = Promise.all(hung).finally(() => (settled = true));
    await until(() => (hang.release(), settled), 30_000, 'the hung evals to end');
    await ended;
    for (const reads of queued) expect(await Promise.all(reads)).toEqual(Array(10).fill(1));
  });
});
