import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type Client, type Ctx, type KeynodeError, type NodeHandle } from 'keynode';
import { startContainer, startContainerProcess, tempDir } from '../helpers/containers.js';

const CLIENTS = 200;
const NODES = 50;
const LOAD_MS = Number(process.env.LOAD_MS ?? 4000);

/** One increment: the counter and a record keyed by (client, seq) change together or not at all. */
const increment = async (ctx: Ctx, key: string) => {
  const count = ctx.ref<number>('count');
  const next = ((await count.get()) ?? 0) + 1;
  await count.set(next);
  await ctx.index('increments').put(key, next);
  return next;
};

interface Outcome {
  acked: Map<string, Set<string>>; // node → keys acknowledged
  failed: Map<string, Set<string>>; // node → keys that failed with a code
  codes: Map<string, number>;
}

/** Resolves once `n` increments were acknowledged in `out` (storm calls `ackHook` on each). */
function acks(n: number): { hook: () => void; reached: Promise<void> } {
  let count = 0;
  let resolve!: () => void;
  const reached = new Promise<void>((r) => (resolve = r));
  return { hook: () => ++count === n && resolve(), reached };
}

async function storm(
  clients: Client[],
  nodes: NodeHandle[],
  ms: number,
  during?: () => Promise<void>,
  ackHook?: () => void,
  stopped = () => false,
  pick = (c: number, seq: number) => nodes[(c + seq) % nodes.length]!,
): Promise<Outcome> {
  const out: Outcome = { acked: new Map(), failed: new Map(), codes: new Map() };
  for (const n of nodes) {
    out.acked.set(n.id, new Set());
    out.failed.set(n.id, new Set());
  }
  const stopAt = Date.now() + ms;
  const workers = clients.map(async (client, c) => {
    for (let seq = 0; Date.now() < stopAt && !stopped(); seq++) {
      const node = pick(c, seq);
      const key = `${c}:${seq}`;
      try {
        await client.at(node, increment, key);
        out.acked.get(node.id)!.add(key);
        ackHook?.();
      } catch (e) {
        const code = (e as KeynodeError).code ?? 'no code';
        out.codes.set(code, (out.codes.get(code) ?? 0) + 1);
        out.failed.get(node.id)!.add(key);
      }
    }
  });
  await Promise.all([...workers, during?.()]);
  return out;
}

async function audit(client: Client, nodes: (NodeHandle | string)[], outcome: Outcome, ackedMustBeExact: boolean): Promise<void> {
  for (const node of nodes) {
    const id = typeof node === 'string' ? node : node.id;
    const [count, entries] = await client.at(id, async (ctx) => [await ctx.ref<number>('count').get(), await ctx.index<number>('increments').entries({ limit: 10_000 })] as const);
    const keys = new Set(entries.map(([k]) => k));
    // No half-commits: the counter and the records always agree.
    expect(count ?? 0).toBe(keys.size);
    // Every acknowledged increment is there, exactly once (index keys are unique by construction).
    for (const k of outcome.acked.get(id)!) expect(keys.has(k)).toBe(true);
    if (ackedMustBeExact) {
      // An eval that failed with a code committed nothing.
      for (const k of outcome.failed.get(id)!) expect(keys.has(k)).toBe(false);
      expect(keys.size).toBe(outcome.acked.get(id)!.size);
    }
  }
}

describe('load and faults', () => {
  it(`${CLIENTS} concurrent clients on ${NODES} nodes: every acknowledged increment is present exactly once`, async () => {
    const { client, url } = await startContainer({ poolMin: 4 });
    const nodes = await client.spawnMany(NODES, { lifetime: Lifetime.root(), acl: ['public'] });
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => connect(url, { identity: Identity.generate(), connections: 1 })));
    try {
      const outcome = await storm(clients, nodes, LOAD_MS);
      const acked = [...outcome.acked.values()].reduce((n, s) => n + s.size, 0);
      expect(acked).toBeGreaterThan(NODES);
      expect(Object.fromEntries(outcome.codes)).toEqual({});
      await audit(client, nodes, outcome, true);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  }, 120_000);

  it('with workers recycled (50 nodes share 25 awake slots, so wakes keep taking scrubbed workers): every acknowledged increment is present exactly once, also under kill -9 of serving workers', async () => {
    const { client, url, container } = await startContainer({ poolMin: 2, capacity: { maxNodes: 1000, maxAwake: 25, memoryMB: 16 * 1024 } });
    const nodes = await client.spawnMany(NODES, { lifetime: Lifetime.root(), acl: ['public'] });
    // 20 clients, one eval in flight each, striding over the nodes: at most 20 busy, so a wake always finds
    // an idle node to put to sleep (admission) and its worker to take (a spare, or taken from it).
    const clients = await Promise.all(Array.from({ length: 20 }, () => connect(url, { identity: Identity.generate(), connections: 1 })));
    const strided = (c: number, seq: number) => nodes[(c + seq * 7) % nodes.length]!;
    const KILLS = 6;
    let kills = 0;
    let done = false;
    const killer = async () => {
      await new Promise((r) => setTimeout(r, LOAD_MS / 2));
      for (let i = 0; kills < KILLS && i < 600; i++) {
        const victim = [...container.supervisor.nodes()].find((n) => n.worker?.pid && n.status === 'active' && (n.worker.served > 1 || n.source === 'spare' || n.source === 'steal'));
        if (victim?.worker?.pid) {
          try {
            process.kill(victim.worker.pid, 'SIGKILL');
            kills++;
          } catch {
            // exited already
          }
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      done = true;
    };
    try {
      const outcome = await storm(clients, nodes, LOAD_MS * 3, killer, undefined, () => done, strided);
      expect(kills).toBe(KILLS);
      expect([...outcome.codes.keys()].every((c) => c === 'ERR_WORKER_CRASHED')).toBe(true);
      await audit(client, nodes, outcome, true);
      const { counts } = container.fleet;
      // The run did recycle: most wakes took a scrubbed worker instead of a new process.
      expect(counts.spare + counts.steal).toBeGreaterThan(NODES);
      expect(counts.spare + counts.steal).toBeGreaterThan(counts.blank + counts.new);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  }, 120_000);

  it('kill -9 of random workers under load: in-flight evals fail with a code, none half-commits, every node answers', async () => {
    const { client, url, container } = await startContainer({ poolMin: 4 });
    const nodes = await client.spawnMany(10, { lifetime: Lifetime.root(), acl: ['public'] });
    const clients = await Promise.all(Array.from({ length: 40 }, () => connect(url, { identity: Identity.generate(), connections: 1 })));
    const KILLS = 8;
    let kills = 0;
    let done = false;
    // Kills a worker that is serving (not one still starting), waits for the load to go on, and repeats.
    const killer = async () => {
      const giveUpAt = Date.now() + 60_000;
      for (let i = 0; kills < KILLS && Date.now() < giveUpAt; i++) {
        const serving = [...container.supervisor.nodes()].filter((n) => n.worker?.pid && n.status === 'active');
        const victim = serving[i % Math.max(1, serving.length)];
        if (victim?.worker?.pid) {
          try {
            process.kill(victim.worker.pid, 'SIGKILL');
            kills++;
          } catch {
            // exited already
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      done = true;
    };
    try {
      const outcome = await storm(clients, nodes, 120_000, killer, undefined, () => done);
      expect(kills).toBe(KILLS);
      // The only failures are the evals the kills took down.
      expect([...outcome.codes.keys()].every((c) => c === 'ERR_WORKER_CRASHED')).toBe(true);
      expect(outcome.codes.get('ERR_WORKER_CRASHED') ?? 0).toBeGreaterThan(0);
      await audit(client, nodes, outcome, true);
      for (const n of nodes) expect(await client.at(n, () => 'up')).toBe('up');
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  }, 120_000);

  it('kill -9 of the container during a write storm: acknowledged writes survive, nothing is half there, every node wakes', async () => {
    const data = await tempDir();
    const proc = await startContainerProcess(data);
    const admin = await connect(proc.url, { identity: proc.operator });
    const nodes = await admin.spawnMany(20, { lifetime: Lifetime.root(), acl: ['public'] });
    const clients = await Promise.all(Array.from({ length: 40 }, () => connect(proc.url, { identity: Identity.generate(), connections: 1 })));
    let outcome: Outcome;
    const enough = acks(100);
    let dead = false;
    try {
      // The storm runs until the container is gone; it is killed once a hundred writes were acknowledged.
      outcome = await storm(clients, nodes, 60_000, async () => {
        await enough.reached;
        await proc.kill9();
        dead = true;
      }, enough.hook, () => dead);
    } finally {
      await Promise.all([...clients, admin].map((c) => c.close()));
    }
    expect([...outcome.acked.values()].reduce((n, s) => n + s.size, 0)).toBeGreaterThanOrEqual(100);

    const again = await startContainerProcess(data);
    const after = await connect(again.url, { identity: again.operator });
    try {
      // The eval in flight at the kill may or may not have committed, but never by half.
      await audit(after, nodes.map((n) => n.id), outcome, false);
      for (const n of nodes) expect(await after.at(n.id, () => 'awake')).toBe('awake');
    } finally {
      await after.close();
      await again.stop();
    }
  }, 120_000);
});
