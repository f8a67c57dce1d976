/**
 * A tenant's abuse costs only that tenant: work it can make the container do is refused before it is
 * expensive, or bounded and off the event loop, so another tenant's evals stay near their unloaded latency.
 */
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { Lifetime, type Client } from 'keynode';
import { idsIn } from '../../dist/container/policies/held-children.js';
import { startContainer, until } from '../helpers/containers.js';
import { failure } from '../policies/util.js';

/** Latencies of `n` sequential evals on `node`: the unloaded baseline. */
async function baseline(client: Client, node: string, n = 40): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await client.at(node, (ctx) => ctx.ref('v').get());
    out.push(performance.now() - t);
  }
  return out;
}

const ABUSER = fileURLToPath(new URL('../fixtures/spawn-abuser.mjs', import.meta.url));

/** Evals on `node` back to back until `stop()`; returns each one's latency. */
function probe(client: Client, node: string): { stop: () => Promise<number[]> } {
  const latencies: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t = performance.now();
      await client.at(node, (ctx) => ctx.ref('v').get());
      latencies.push(performance.now() - t);
    }
  })();
  return { stop: async () => ((running = false), await loop, latencies) };
}

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.ceil(xs.length * q) - 1]!;

/**
 * The bound the issue sets: the victim's latency stays within 2× its unloaded p99 (with a floor for this
 * shared 2-core machine, where a worker's fork alone can hold the event loop some tens of milliseconds and
 * other processes take the cores for longer).
 * Judged on the loaded p95, so one sample the OS scheduler delayed does not decide; the worst sample must
 * still stay far below the seconds the attacks caused before they were fixed; when the unloaded run itself saw
 * slow samples (the machine was busy with other processes), that bound scales with them.
 */
function expectBounded(unloaded: number[], loaded: number[]): void {
  expect(loaded.length).toBeGreaterThan(5);
  expect(quantile(loaded, 0.95)).toBeLessThan(Math.max(2 * quantile(unloaded, 0.99), 500));
  expect(Math.max(...loaded)).toBeLessThan(Math.max(1500, 3 * Math.max(...unloaded)));
}

describe('spawn by a principal without budget', () => {
  it('is refused before any key is made, and another tenant does not notice eight parallel batches of 10,000', async () => {
    const { url, client, container } = await startContainer();
    const victim = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(victim, (ctx) => ctx.ref('v').set(1));
    const unloaded = await baseline(client, victim.id);
    const mint = container.runtime.keyring.mint;
    const before = mint.generated;
    const watch = probe(client, victim.id);
    try {
      const run = await execa(process.execPath, [ABUSER, url], { timeout: 60_000 });
      const codes = JSON.parse(run.stdout) as string[];
      expect(codes).toEqual(Array(9).fill('ERR_BUDGET_EXHAUSTED'));
    } finally {
      expectBounded(unloaded, await watch.stop());
    }
    // Nothing was made for them: the key mint's threads never had their work (its stock refill aside).
    expect(mint.generated).toBeLessThanOrEqual(before + 512);
  }, 60_000);
});

describe('ephemeral children held through state', () => {
  it('finds IDs only where a whole ID occurs, inside longer runs of base32 too', () => {
    const kid = 'a'.repeat(10) + 'b'.repeat(42);
    const other = 'c'.repeat(52);
    const prefixes = new Set([0, 0]); // 'aaaaaa' is 0 in base32 digits
    const kids = new Set([kid, other]);
    const bytes = (s: string) => Buffer.from(s, 'latin1');
    expect([...idsIn(bytes(`{"x":"${kid}"}`), kids, prefixes)]).toEqual([kid]);
    expect([...idsIn(bytes(`zz${kid}zz`), kids, prefixes)]).toEqual([kid]);
    expect([...idsIn(bytes(kid.slice(0, 51)), kids, prefixes)]).toEqual([]);
    expect([...idsIn(bytes(`${kid.slice(0, 30)}-${kid.slice(30)}`), kids, prefixes)]).toEqual([]);
    // A child whose prefix is not listed is not looked for: the filter is what makes the scan cheap.
    expect([...idsIn(bytes(other), kids, prefixes)]).toEqual([]);
  });

  it('keeps what a ref, an index key or an index value holds, and drops a child once its last holder goes', async () => {
    const { container, client } = await startContainer({ idleTimeoutMs: 100 });
    const gone = new Set<string>();
    container.on('destroy', (id: string) => gone.add(id));
    const parent = await client.spawn({ lifetime: Lifetime.root(), budget: { maxNodes: 5 }, sandbox: { spawn: { lifetimes: ['ephemeral'] } } });
    const ids = await client.at(parent, async (ctx) => {
      const kids = [];
      for (let i = 0; i < 5; i++) kids.push((await ctx.spawn({ lifetime: ctx.Lifetime.ephemeral() })).id);
      await ctx.ref('one').set(kids[0]);
      await ctx.index('by-key').put(`${kids[1]}`, 1);
      await ctx.index('by-value').put('k', { nested: [`prefix-${kids[2]}`] });
      await ctx.ref('twice').set([kids[3], kids[3]]);
      await ctx.ref('both').set([kids[3]]);
      return kids;
    });
    await until(() => gone.has(ids[4]!), 10_000, 'the unheld child to be collected');
    for (const id of ids.slice(0, 4)) expect(gone.has(id)).toBe(false);
    // Each holder removed in its own way: overwrite, delete, and one of two refs holding the same child.
    await client.at(parent, async (ctx, byKey: string) => {
      await ctx.ref('one').set('nothing');
      await ctx.index('by-key').delete(byKey);
      await ctx.ref('twice').set(null);
    }, ids[1]);
    await until(() => gone.has(ids[0]!) && gone.has(ids[1]!), 10_000, 'children no longer held to be collected');
    expect(gone.has(ids[2]!)).toBe(false);
    expect(gone.has(ids[3]!)).toBe(false); // 'both' still holds it
  }, 60_000);

  it('a parent with 1,000 children and 32 MB of state crashing again and again does not stall another tenant', async () => {
    const { container, client } = await startContainer();
    const victim = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(victim, (ctx) => ctx.ref('v').set(1));
    const parent = await client.spawn({
      lifetime: Lifetime.root(),
      budget: { maxNodes: 1000 },
      sandbox: { spawn: { lifetimes: ['ephemeral'] }, memoryMB: 256, maxMessageBytes: 16 * 1024 * 1024, timeoutMs: 60_000 },
    });
    const kids: string[] = [];
    for (let i = 0; i < 20; i++) {
      kids.push(...(await client.at(parent, (ctx) => Promise.all(Array.from({ length: 50 }, async () => (await ctx.spawn({ lifetime: ctx.Lifetime.ephemeral() })).id)))));
    }
    // State a search would read before it finds the children: refs come before the index that lists them.
    for (let i = 0; i < 4; i++) await client.at(parent, (ctx, name: string) => ctx.ref(name).set('q'.repeat(8 * 1024 * 1024)), `filler-${i}`);
    await client.at(parent, (ctx, ids: string[]) => ctx.index('kids').put('all', ids), kids);
    await client.update(parent, { sandbox: { timeoutMs: 300 } });
    const unloaded = await baseline(client, victim.id);
    const gone: string[] = [];
    container.on('destroy', (id: string) => gone.push(id));
    const watch = probe(client, victim.id);
    try {
      for (let i = 0; i < 4; i++) {
        const e = await failure(client.at(parent, () => { for (;;); }));
        expect(e.code).toBe('ERR_EVAL_TIMEOUT');
      }
      // Every child is still held, so a collection had to look at each one.
      expect(await client.at(parent, async (ctx) => (await ctx.index('kids').get('all')).length)).toBe(1000);
    } finally {
      expectBounded(unloaded, await watch.stop());
    }
    expect(gone).toEqual([]);
  }, 120_000);
});
