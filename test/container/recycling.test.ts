/**
 * Recycled workers: a node that sleeps leaves its worker, scrubbed, to the next node of its tenant. These tests
 * prove the scrub (node B on A's process sees exactly what a fresh process shows, and nothing of A), the
 * scope (never across tenants, never for `isolation: 'process'`), the operator's bounds, and that a worker
 * the container had to kill or that misbehaved is never given to another node.
 */
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type Client, type KeynodeError, type NodeHandle } from 'keynode';
import type { Container } from 'keynode/container';
import { alive, startContainer, until } from '../helpers/containers.js';

const TURNCOAT = fileURLToPath(new URL('../fixtures/turncoat-wrapper.sh', import.meta.url));

/** Wake pids per node, from the container's events. */
function pidsOf(container: Container): Map<string, number[]> {
  const pids = new Map<string, number[]>();
  container.on('wake', (id, pid) => pids.set(id, [...(pids.get(id) ?? []), pid]));
  return pids;
}

/** Runs one eval and waits until the node has gone back to sleep (short idle timeout). */
async function runAndSleep<T>(container: Container, client: Client, node: NodeHandle, fn: (...a: never[]) => T, ...args: unknown[]): Promise<Awaited<T>> {
  const slept = new Promise<void>((resolve) => {
    const on = (id: string) => {
      if (id !== node.id) return;
      container.off('sleep', on);
      resolve();
    };
    container.on('sleep', on);
  });
  const value = (await client.at(node, fn as never, ...(args as never[]))) as Awaited<T>;
  await slept;
  return value;
}

/**
 * Everything a node can reach from its global object, as text: own keys of every reachable object and
 * function (prototypes included), data values that are primitives, and accessors by kind. Identity-free, so
 * two fresh Compartments print the same. Runs inside the node.
 */
const fingerprint = () => {
  const seen = new Set<unknown>();
  const lines: string[] = [];
  const queue: [unknown, string][] = [[globalThis, 'globalThis']];
  while (queue.length && seen.size < 20_000) {
    const [obj, path] = queue.shift()!;
    if ((typeof obj !== 'object' && typeof obj !== 'function') || obj === null || seen.has(obj)) continue;
    seen.add(obj);
    lines.push(`${path} frozen=${Object.isFrozen(obj)}`);
    queue.push([Object.getPrototypeOf(obj), `${path}.__proto__`]);
    for (const key of Reflect.ownKeys(obj)) {
      const name = typeof key === 'symbol' ? `[${String(key)}]` : key;
      const d = Reflect.getOwnPropertyDescriptor(obj, key)!;
      if ('value' in d) {
        const v = d.value;
        if ((typeof v === 'object' && v !== null) || typeof v === 'function') queue.push([v, `${path}.${name}`]);
        else lines.push(`${path}.${name} = ${typeof v === 'symbol' ? String(v) : typeof v === 'bigint' ? `${v}n` : JSON.stringify(v) ?? String(v)}`);
      } else {
        lines.push(`${path}.${name} accessor${d.get ? ' get' : ''}${d.set ? ' set' : ''}`);
        if (d.get) queue.push([d.get, `${path}.${name}.get`]);
        if (d.set) queue.push([d.set, `${path}.${name}.set`]);
      }
    }
  }
  // The stack of a fresh error and the Error statics: what prepareStackTrace tricks would change.
  const e = new Error('probe');
  lines.push(`Error.stackTraceLimit=${String((Error as { stackTraceLimit?: unknown }).stackTraceLimit)}`);
  lines.push(`stack-first-line=${String(e.stack).split('\n')[0]}`);
  return lines.sort();
};

/** Node A of the tenant tries to leave something behind for whoever its process serves next. */
const attack = async (ctx: any, secret: string) => {
  const tried: string[] = [];
  const attempt = (what: string, f: () => void) => {
    try {
      f();
      tried.push(`${what}: ok`);
    } catch {
      tried.push(`${what}: refused`);
    }
  };
  // Prototype pollution, the classic ways.
  attempt('Object.prototype.polluted', () => { (Object.prototype as any).polluted = secret; });
  attempt('defineProperty Object.prototype', () => Object.defineProperty(Object.prototype, 'leak', { value: secret }));
  attempt('Array.prototype.push', () => { (Array.prototype as any).push = () => secret; });
  attempt('__proto__ of a literal', () => { ({} as any).__proto__.viaLiteral = secret; });
  attempt('JSON.parse __proto__', () => Object.assign({}, JSON.parse(`{"__proto__": {"viaJson": "${secret}"}}`)));
  // A property on every reachable object and function.
  const seen = new Set<unknown>();
  const queue: unknown[] = [globalThis];
  let planted = 0;
  while (queue.length && seen.size < 20_000) {
    const obj = queue.shift();
    if ((typeof obj !== 'object' && typeof obj !== 'function') || obj === null || seen.has(obj)) continue;
    seen.add(obj);
    try {
      (obj as any)[`leak_${secret}`] = secret;
      planted++;
    } catch {}
    try {
      Object.defineProperty(obj, Symbol.for(`keynode.leak.${secret}`), { value: secret });
      planted++;
    } catch {}
    queue.push(Object.getPrototypeOf(obj));
    for (const key of Reflect.ownKeys(obj)) {
      const d = Reflect.getOwnPropertyDescriptor(obj, key);
      if (d && 'value' in d) queue.push(d.value);
    }
  }
  tried.push(`planted on ${planted} of ${seen.size} reachable objects`);
  // Stack trace machinery.
  attempt('Error.prepareStackTrace', () => { (Error as any).prepareStackTrace = () => `stack of ${secret}`; });
  attempt('Error.stackTraceLimit', () => { (Error as any).stackTraceLimit = 1; });
  attempt('Error.captureStackTrace', () => (Error as any).captureStackTrace({ secret }));
  attempt('RegExp statics', () => /(leak-[a-z]+)/.exec(`leak-${secret}`));
  // Symbols in the process-wide registry.
  Symbol.for(`keynode.secret.${secret}`);
  // A huge retained array, and a ctx kept alive by continuations that outlive the eval.
  const hoard = new Array(200_000).fill(secret);
  void ctx.ref('late').get().then(async () => {
    await ctx.ref('late').set(`${secret} written late, holding ${hoard.length}`);
  }).catch(() => {});
  let chain: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < 1000; i++) chain = chain.then(() => attempt(`late ${i}`, () => ((globalThis as any).late = secret)));
  // A thenable that hands its resolver a getter which runs on the container's reading of the result.
  const thenable = { then: (resolve: (v: unknown) => void) => resolve({ secret }) };
  attempt('WeakMap keyed by an intrinsic', () => new WeakMap<object, unknown>().set(Array.prototype, { ctx, hoard }));
  tried.push(`FinalizationRegistry ${typeof (globalThis as any).FinalizationRegistry}, WeakRef ${typeof (globalThis as any).WeakRef}`);
  await ctx.ref('mine').set(secret);
  return { tried, echo: await thenable };
};

/** Node B looks for anything of A's: by name, by value, in its state, in its stack, in the registry. */
const look = async (ctx: any, secret: string) => {
  const found: string[] = [];
  const seen = new Set<unknown>();
  const queue: [unknown, string][] = [[globalThis, 'globalThis']];
  while (queue.length && seen.size < 20_000) {
    const [obj, path] = queue.shift()!;
    if ((typeof obj !== 'object' && typeof obj !== 'function') || obj === null || seen.has(obj)) continue;
    seen.add(obj);
    queue.push([Object.getPrototypeOf(obj), `${path}.__proto__`]);
    for (const key of Reflect.ownKeys(obj)) {
      if (String(key).includes(secret)) found.push(`${path}: key ${String(key)}`);
      const d = Reflect.getOwnPropertyDescriptor(obj, key);
      if (!d || !('value' in d)) continue;
      if (typeof d.value === 'string' && d.value.includes(secret)) found.push(`${path}.${String(key)}: value`);
      queue.push([d.value, `${path}.${String(key)}`]);
    }
  }
  for (const probe of [({} as any).polluted, ({} as any).leak, ({} as any).viaLiteral, ({} as any).viaJson, (globalThis as any).late]) {
    if (probe !== undefined) found.push(`probe: ${String(probe)}`);
  }
  if ((Object.prototype as any)[Symbol.for(`keynode.leak.${secret}`)] !== undefined) found.push('registered symbol property');
  if (String(new Error('x').stack).includes(secret)) found.push('stack');
  if (String((RegExp as any).lastMatch ?? '').includes(secret) || String((RegExp as any).$1 ?? '').includes(secret)) found.push('RegExp statics');
  for (const name of ['mine', 'late']) if ((await ctx.ref(name).get()) !== undefined) found.push(`ref ${name}`);
  return found;
};

describe('recycled workers', () => {
  it('node B of the same tenant, woken on the process node A used, sees exactly what a fresh process shows and nothing of A', async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 200, poolMin: 0 });
    const pids = pidsOf(container);
    const [fresh, a, b] = (await client.spawnMany(3, { lifetime: Lifetime.root(), sandbox: { memoryMB: 64 } })) as [NodeHandle, NodeHandle, NodeHandle];

    const baseline = await runAndSleep(container, client, fresh, fingerprint);
    const secret = `s3cr3t${Date.now()}`;
    const report = await runAndSleep(container, client, a, attack, secret);
    expect(report.echo).toEqual({ secret });
    // Intrinsics are frozen: every pollution attempt was refused, and nothing could be planted on them.
    for (const t of ['Object.prototype.polluted', 'defineProperty Object.prototype', 'Array.prototype.push', '__proto__ of a literal']) expect(report.tried).toContain(`${t}: refused`);
    expect(report.tried).toContainEqual(expect.stringMatching(/^planted on 0 of \d+ reachable objects$/));
    expect(report.tried).toContain('FinalizationRegistry undefined, WeakRef undefined');

    const found = await client.at(b, look, secret);
    const after = await client.at(b, fingerprint);
    // B ran in the very process A used (and the fresh node before it): this is reuse, not a new process.
    expect(pids.get(b.id)).toEqual(pids.get(a.id));
    expect(pids.get(a.id)).toEqual(pids.get(fresh.id));
    expect(found).toEqual([]);
    expect(after).toEqual(baseline);
    // A's dangling continuation could not write after its eval: A's state is what its eval committed.
    expect(await client.at(a, async (ctx) => [await ctx.ref('mine').get(), await ctx.ref('late').get()])).toEqual([secret, null]);
  });

  it('Math.random comes from the CSPRNG, not from a generator state the process carries from node to node', async () => {
    const { client } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.root() });
    const [source, draws] = await client.at(node, () => [String(Math.random), Array.from({ length: 1000 }, () => Math.random())]);
    expect(source).not.toContain('[native code]');
    expect(new Set(draws).size).toBe(1000);
    expect(draws.every((x: number) => x >= 0 && x < 1)).toBe(true);
  });

  it('a worker never serves two tenants', async () => {
    const { container, url, client: op } = await startContainer({ idleTimeoutMs: 150, poolMin: 0 });
    const alice = await connect(url, { identity: Identity.generate() });
    const bob = await connect(url, { identity: Identity.generate() });
    try {
      for (const c of [alice, bob]) await op.grant(c.here, { maxNodes: 4, maxAwake: 4, memoryMB: 1024 });
      const pids = pidsOf(container);
      const aliceNodes = await alice.spawnMany(4, { lifetime: Lifetime.root() });
      const bobNodes = await bob.spawnMany(4, { lifetime: Lifetime.root() });
      // Interleaved wakes, each after the previous node slept: spares of the other tenant are always there.
      for (let i = 0; i < 4; i++) {
        await runAndSleep(container, alice, aliceNodes[i]!, () => 1);
        await runAndSleep(container, bob, bobNodes[i]!, () => 2);
      }
      const alicePids = new Set(aliceNodes.flatMap((n) => pids.get(n.id)!));
      const bobPids = new Set(bobNodes.flatMap((n) => pids.get(n.id)!));
      expect([...alicePids].filter((p) => bobPids.has(p))).toEqual([]);
      // And within a tenant, the spare was reused.
      expect(alicePids.size).toBeLessThan(4);
      expect(bobPids.size).toBeLessThan(4);
    } finally {
      await Promise.all([alice.close(), bob.close()]);
    }
  });

  it("isolation: 'process' nodes never share a pid with any other node, across many wakes", async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 100, poolMin: 1 });
    const pids = pidsOf(container);
    const isolated = await client.spawnMany(3, { lifetime: Lifetime.root(), sandbox: { isolation: 'process' } });
    const shared = await client.spawnMany(3, { lifetime: Lifetime.root() });
    const all = [...isolated, ...shared];
    for (let round = 0; round < 4; round++) {
      // Concurrently: wakes race for spares, blanks and idle neighbours' workers.
      await Promise.all(all.map((n) => runAndSleep(container, client, n, () => 1)));
    }
    const owner = new Map<number, Set<string>>();
    for (const [id, list] of pids) for (const pid of list) owner.set(pid, (owner.get(pid) ?? new Set()).add(id));
    for (const n of isolated) {
      const mine = pids.get(n.id)!;
      expect(mine).toHaveLength(4);
      expect(new Set(mine).size).toBe(4); // a fresh process every wake
      for (const pid of mine) expect([...owner.get(pid)!]).toEqual([n.id]);
    }
    // The shared ones did reuse processes among themselves.
    expect(new Set(shared.flatMap((n) => pids.get(n.id)!)).size).toBeLessThan(12);
  });

  it("a child of an isolation 'process' node cannot ask for less, and inherits it by default", async () => {
    const { client } = await startContainer();
    const parent = await client.spawn({ lifetime: Lifetime.root(), sandbox: { isolation: 'process', spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 2 } });
    const refused = (await client.at(parent, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { isolation: 'tenant' } })).catch((e: unknown) => e)) as KeynodeError;
    expect(refused.code).toBe('ERR_SANDBOX');
    const child = await client.at(parent, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked() }));
    expect((await client.describe(child.id)).sandbox.isolation).toBe('process');
    const bad = (await client.spawn({ lifetime: Lifetime.root(), sandbox: { isolation: 'thread' as 'process' } }).catch((e: unknown) => e)) as KeynodeError;
    expect(bad.code).toBe('ERR_BAD_POLICY');
  });

  it('workerReuse off restores one process per wake', async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 100, workerReuse: 'off', poolMin: 1 });
    const pids = pidsOf(container);
    const nodes = await client.spawnMany(4, { lifetime: Lifetime.root() });
    for (const n of nodes) await runAndSleep(container, client, n, () => 1);
    for (const n of nodes) await runAndSleep(container, client, n, () => 2);
    const every = [...pids.values()].flat();
    expect(every).toHaveLength(8);
    expect(new Set(every).size).toBe(8);
    expect(container.fleet.counts.spare + container.fleet.counts.steal).toBe(0);
  });

  it('workerMaxNodes retires a worker after that many nodes', async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 100, workerMaxNodes: 3, poolMin: 0 });
    const pids = pidsOf(container);
    const nodes = await client.spawnMany(7, { lifetime: Lifetime.root() });
    for (const n of nodes) await runAndSleep(container, client, n, () => 1);
    const order = nodes.map((n) => pids.get(n.id)![0]!);
    // One process per three nodes, in order: 3 + 3 + 1.
    expect(order[0]).toBe(order[1]);
    expect(order[1]).toBe(order[2]);
    expect(order[3]).not.toBe(order[2]);
    expect(order[3]).toBe(order[4]);
    expect(order[4]).toBe(order[5]);
    expect(order[6]).not.toBe(order[5]);
    await until(() => !alive(order[0]!) && !alive(order[3]!), 5000, 'retired workers to exit');
    expect(container.fleet.counts.retired).toBeGreaterThanOrEqual(2);
  });

  it("a user's exception is not the worker's failure: the worker serves the tenant's next node", async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 200, poolMin: 0 });
    const pids = pidsOf(container);
    const [x, y] = (await client.spawnMany(2, { lifetime: Lifetime.root() })) as [NodeHandle, NodeHandle];
    const slept = once(container, 'sleep');
    const err = (await client.at(x, () => { throw new Error('only a user error'); }).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_USER');
    await slept;
    await runAndSleep(container, client, y, () => 1);
    expect(pids.get(y.id)).toEqual(pids.get(x.id));
  });

  describe('a worker the container had to stop is never reused', () => {
    const cases: [string, (ctx: any) => unknown, string, object][] = [
      ['ran past its time limit', () => { for (;;); }, 'ERR_EVAL_TIMEOUT', { timeoutMs: 300 }],
      ['overran its memory', () => { const h: Uint8Array[] = []; for (;;) h.push(new Uint8Array(8 << 20).fill(1)); }, 'ERR_OUT_OF_MEMORY', { memoryMB: 32, timeoutMs: 20_000 }],
    ];
    for (const [what, fn, code, sandbox] of cases) {
      it(what, async () => {
        const { container, client } = await startContainer({ idleTimeoutMs: 200, poolMin: 0, rssOverheadMB: 48 });
        const pids = pidsOf(container);
        const [x, y] = (await client.spawnMany(2, { lifetime: Lifetime.root(), sandbox })) as [NodeHandle, NodeHandle];
        const err = (await client.at(x, fn).catch((e: unknown) => e)) as KeynodeError;
        expect(err.code).toBe(code);
        const first = pids.get(x.id)![0]!;
        await until(() => !alive(first), 5000, 'the killed worker to be gone');
        await runAndSleep(container, client, y, () => 1);
        expect(pids.get(y.id)![0]).not.toBe(first);
        expect(container.fleet.spares).toBeLessThanOrEqual(1);
      });
    }

    const turncoats: [string, string][] = [
      ['sent a frame that is not MessagePack', 'TURNCOAT:bad-frame'],
      ['said released when no release was asked', 'TURNCOAT:early-released'],
      ['did not answer a release in time', 'TURNCOAT:hang-release'],
    ];
    for (const [what, marker] of turncoats) {
      it(what, async () => {
        const { container, client } = await startContainer({ idleTimeoutMs: 200, poolMin: 0, workerWrapper: TURNCOAT, releaseTimeoutMs: 300 });
        const pids = pidsOf(container);
        const [x, y] = (await client.spawnMany(2, { lifetime: Lifetime.root() })) as [NodeHandle, NodeHandle];
        const slept = once(container, 'sleep');
        // The marker travels in the eval's source; the preloaded turncoat reacts to it.
        const outcome = await client.at(x, new Function(`return () => '${marker}'`)() as () => string).catch((e: unknown) => e);
        if (marker === 'TURNCOAT:hang-release') expect(outcome).toBe(marker);
        else expect(['ERR_WORKER_CRASHED', undefined]).toContain((outcome as KeynodeError).code);
        const [, why] = await slept;
        expect(why).toBe(marker === 'TURNCOAT:hang-release' ? 'idle' : 'crash');
        const first = pids.get(x.id)![0]!;
        // At once: a hung worker may still be parked, and take y's frames before its release times out; y's
        // eval, which never started there, then runs on another worker instead of failing.
        expect(await client.at(y, () => 'served')).toBe('served');
        await until(() => !alive(first), 5000, 'the turncoat to be killed');
        expect(pids.get(y.id)!.at(-1)).not.toBe(first);
      });
    }
  });
});
