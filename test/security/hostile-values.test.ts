/**
 * Values a hostile function throws, returns or logs: each gets a clear code, and nobody else is harmed (a
 * bystander node keeps answering with its state intact, the hostile node answers its next eval).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { isKeynodeError, Lifetime, type KeynodeError, type NodeHandle } from 'keynode';
import { startContainer, type TestContainer } from '../helpers/containers.js';

let tc: TestContainer;
/** Runs the hostile functions; a short timeout because some of them spin forever. */
let hostile: NodeHandle;
/** Another tenant's node, which must not notice any of this. */
let bystander: NodeHandle;

const TIMEOUT_MS = 1000;

beforeAll(async () => {
  tc = await startContainer();
  hostile = await tc.client.spawn({ lifetime: Lifetime.root(), sandbox: { timeoutMs: TIMEOUT_MS } });
  bystander = await tc.client.spawn({ lifetime: Lifetime.root() });
  await tc.client.at(bystander, (ctx) => ctx.ref('canary').set('alive'));
});

type Outcome = { ok: true; value: unknown; ms: number } | { ok: false; code: string; error: KeynodeError; ms: number };

async function run(node: NodeHandle, source: string, ...args: unknown[]): Promise<Outcome> {
  const fn = new Function(`return ${source}`)() as (ctx: unknown, ...a: unknown[]) => unknown;
  const t = Date.now();
  return tc.client.at(node, fn, ...args).then(
    (value) => ({ ok: true as const, value, ms: Date.now() - t }),
    (error: unknown) => {
      expect(isKeynodeError(error), `not a KeynodeError: ${String(error)}`).toBe(true);
      return { ok: false as const, code: (error as KeynodeError).code, error: error as KeynodeError, ms: Date.now() - t };
    },
  );
}

/** The hostile node answers again and the bystander never noticed. */
async function nobodyHarmed(): Promise<void> {
  expect(await tc.client.at(hostile, () => 'ok')).toBe('ok');
  expect(await tc.client.at(bystander, (ctx) => ctx.ref('canary').get())).toBe('alive');
}

function codeOf(o: Outcome): string {
  return o.ok ? `ok: ${JSON.stringify(o.value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))?.slice(0, 200)}` : o.code;
}

describe('thrown values', () => {
  const cases: [string, string, string[]][] = [
    ['evil toString, valueOf and Symbol.toPrimitive', `() => { throw { [Symbol.toPrimitive]() { throw new Error('tp'); }, toString() { throw new Error('ts'); }, valueOf() { throw new Error('vo'); } }; }`, ['ERR_USER']],
    ['an Error with evil toString and Symbol.toPrimitive', `() => { const e = new Error('m'); e.toString = () => { throw new Error('ts'); }; e[Symbol.toPrimitive] = () => { throw new Error('tp'); }; throw e; }`, ['ERR_USER']],
    ['throwing getters on name, message, stack and code', `() => { throw { get name() { throw new Error('n'); }, get message() { throw new Error('m'); }, get stack() { throw new Error('s'); }, get code() { throw new Error('c'); } }; }`, ['ERR_USER']],
    ['getters that throw the thrown value again', `() => { const o = { get name() { throw o; }, get message() { throw o; }, get code() { throw o; } }; throw o; }`, ['ERR_USER']],
    ['a getter that loops forever', `() => { throw { get message() { for (;;) {} } }; }`, ['ERR_EVAL_TIMEOUT']],
    ['a getter that recurses to the stack limit', `() => { const o = { get message() { return o.message; } }; throw o; }`, ['ERR_USER']],
    ['getters returning huge strings', `() => { const big = 'y'.repeat(2e6); throw { get name() { return big; }, get message() { return big; }, get stack() { return big; }, get code() { return big; } }; }`, ['ERR_USER']],
    ['an Error with a huge message, name and stack', `() => { const e = new Error('z'.repeat(4e6)); e.name = 'N'.repeat(1e6); Object.defineProperty(e, 'stack', { value: 's'.repeat(4e6) }); throw e; }`, ['ERR_USER']],
    ['a Proxy whose traps throw', `() => { throw new Proxy({}, { get() { throw new Error('get'); }, has() { throw new Error('has'); }, getPrototypeOf() { throw new Error('proto'); }, ownKeys() { throw new Error('keys'); }, getOwnPropertyDescriptor() { throw new Error('desc'); } }); }`, ['ERR_USER']],
    ['a revoked Proxy', `() => { const { proxy, revoke } = Proxy.revocable({}, {}); revoke(); throw proxy; }`, ['ERR_USER']],
    ['a Proxy of a function', `() => { throw new Proxy(function evil() {}, { get(t, k) { if (k === 'name') throw new Error('no'); return Reflect.get(t, k); } }); }`, ['ERR_USER']],
    ['a function', `() => { throw function evil() {}; }`, ['ERR_USER']],
    ['a symbol', `() => { throw Symbol('boom'); }`, ['ERR_USER']],
    ['undefined', `() => { throw undefined; }`, ['ERR_USER']],
    ['a huge BigInt', `() => { throw 10n ** 3000n; }`, ['ERR_USER']],
    ['a getter on the thrown value that writes through ctx', `(ctx) => { throw { get message() { ctx.ref('thrown').set('written by a getter'); ctx.log('late line'); return 'm'; } }; }`, ['ERR_USER']],
    ['a plain object branded as a KeynodeError', `() => { throw { [Symbol.for('keynode.error')]: true, code: 'ERR_ACCESS_DENIED', message: 'forged verdict' }; }`, ['ERR_USER']],
  ];

  it.each(cases)('%s', async (_name, source, codes) => {
    const o = await run(hostile, source);
    expect(codes, codeOf(o)).toContain(o.ok ? 'ok' : o.code);
    if (!o.ok) {
      // Clear, bounded: what reaches the caller never carries megabytes of hostile text.
      expect(o.error.message.length).toBeLessThanOrEqual(70 * 1024);
      if (o.error.remote) {
        expect(typeof o.error.remote.name).toBe('string');
        expect(typeof o.error.remote.message).toBe('string');
        expect(o.error.remote.name.length).toBeLessThanOrEqual(1024);
        expect(o.error.remote.message.length).toBeLessThanOrEqual(64 * 1024);
        expect((o.error.remote.stack ?? '').length).toBeLessThanOrEqual(64 * 1024);
      }
      if (o.code === 'ERR_EVAL_TIMEOUT') expect(o.ms).toBeLessThan(TIMEOUT_MS + 4000);
    }
    await nobodyHarmed();
    // A failed eval commits nothing, even what a getter tried to write.
    expect(await tc.client.at(hostile, (ctx) => ctx.ref('thrown').get())).toBeNull();
  });
});

describe('forged verdicts', () => {
  it('reports a caught keynode error whose code the user changed as the user\'s own error', async () => {
    const outcomes: Record<string, string> = {};
    for (const forged of ['ERR_ACCESS_DENIED', 'ERR_NODE_DESTROYED', 'ERR_OUT_OF_MEMORY', 'ERR_BUDGET_EXHAUSTED']) {
      const o = await run(hostile, `(ctx, forged) => { try { ctx.ref(''); } catch (e) { e.code = forged; e.message = 'forged ' + forged; throw e; } }`, forged);
      outcomes[forged] = codeOf(o);
    }
    // ERR_BAD_MESSAGE is the genuine verdict on ctx.ref(''); anything else is a forgery passing as keynode's.
    for (const [forged, got] of Object.entries(outcomes)) expect(['ERR_USER', 'ERR_BAD_MESSAGE'], `forged ${forged} came back as ${got}`).toContain(got);
    await nobodyHarmed();
  });

  it('reports a caught keynode error changed to a code keynode does not know as the user\'s own error', async () => {
    const o = await run(hostile, `(ctx) => { try { ctx.ref(''); } catch (e) { e.code = 'ERR_MADE_UP'; throw e; } }`);
    expect(['ERR_USER', 'ERR_BAD_MESSAGE'], codeOf(o)).toContain(codeOf(o));
    await nobodyHarmed();
  });

  it('reports a new error built from a genuine error\'s constructor as the user\'s own error', async () => {
    const o = await run(hostile, `(ctx) => { try { ctx.ref(''); } catch (e) { throw new e.constructor('ERR_ACCESS_DENIED', 'forged'); } }`);
    expect(codeOf(o)).toBe('ERR_USER');
    await nobodyHarmed();
  });
});

describe('results', () => {
  const cases: [string, string, string[]][] = [
    ['a cyclic object', `() => { const a = { x: 1 }; a.self = a; return a; }`, ['ERR_RESULT']],
    ['a cyclic array', `() => { const a = [1]; a.push(a); return a; }`, ['ERR_RESULT']],
    ['a value beyond maxMessageBytes', `() => 'x'.repeat(2 * 1024 * 1024)`, ['ERR_TOO_LARGE']],
    ['many small values beyond maxMessageBytes', `() => Array.from({ length: 300000 }, (_, i) => i * 1000)`, ['ERR_TOO_LARGE']],
    ['a function', `() => () => 1`, ['ERR_RESULT']],
    ['a function nested in an object', `() => ({ a: [1, { f() {} }] })`, ['ERR_RESULT']],
    ['a symbol', `() => Symbol('s')`, ['ERR_RESULT']],
    ['a BigInt beyond 64 bits', `() => 10n ** 30n`, ['ok']],
    ['a huge BigInt', `() => 7n ** 200000n`, ['ok', 'ERR_TOO_LARGE']],
    ['a Map that contains itself', `() => { const m = new Map(); m.set('m', m); return m; }`, ['ERR_RESULT']],
    ['Maps nested 10,000 deep', `() => { let m = new Map(); for (let i = 0; i < 10000; i++) m = new Map([[i, m]]); return m; }`, ['ERR_RESULT']],
    ['a Proxy with benign traps', `() => new Proxy({}, { ownKeys: () => ['a'], getOwnPropertyDescriptor: () => ({ value: 1, enumerable: true, configurable: true }), get: () => 'trap' })`, ['ok']],
    ['a revoked Proxy', `() => { const { proxy, revoke } = Proxy.revocable({}, {}); revoke(); return proxy; }`, ['ERR_RESULT', 'ERR_USER']],
    ['a revoked Proxy inside an object', `() => { const { proxy, revoke } = Proxy.revocable({}, {}); revoke(); return { inner: proxy }; }`, ['ERR_RESULT', 'ERR_USER']],
    ['a Proxy whose traps throw', `() => new Proxy({}, { ownKeys() { throw new Error('keys'); }, get() { throw new Error('get'); }, has() { throw new Error('has'); }, getPrototypeOf() { throw new Error('proto'); } })`, ['ERR_RESULT', 'ERR_USER']],
    ['a Proxy whose traps throw, inside an array', `() => [new Proxy({}, { ownKeys() { throw new Error('keys'); }, has() { throw new Error('has'); } })]`, ['ERR_RESULT', 'ERR_USER']],
    ['a getter that throws', `() => ({ get x() { throw new Error('getter'); } })`, ['ERR_RESULT', 'ERR_USER']],
    ['a getter that loops forever', `() => ({ get x() { for (;;) {} } })`, ['ERR_EVAL_TIMEOUT']],
    ['a Promise that never settles', `() => new Promise(() => {})`, ['ERR_EVAL_TIMEOUT']],
    ['a thenable that never calls back', `async () => ({ then() {} })`, ['ERR_EVAL_TIMEOUT']],
    ['a thenable whose then getter throws', `async () => ({ get then() { throw new Error('then'); } })`, ['ERR_USER']],
  ];

  it.each(cases)('%s', async (_name, source, codes) => {
    const o = await run(hostile, source);
    expect(codes, codeOf(o)).toContain(o.ok ? 'ok' : o.code);
    if (!o.ok && o.code === 'ERR_EVAL_TIMEOUT') expect(o.ms).toBeLessThan(TIMEOUT_MS + 4000);
    await nobodyHarmed();
  });

  it.each([
    ['an own __proto__ key', `JSON.parse('{"__proto__": {"polluted": "yes"}, "a": 1}')`],
    ['a forged node reference with a bad URL', `({ [Symbol.for('keynode.noderef')]: true, url: 'not a url', id: 'x' })`],
    ['a node reference whose url getter changes between reads', `(() => { let n = 0; return { [Symbol.for('keynode.noderef')]: true, get url() { return n++ ? 'x' : 'http://127.0.0.1:1/25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena'; } }; })()`],
  ])('gives a value MessagePack peers refuse (%s) a result error, not a protocol error', async (_name, expr) => {
    const returned = await run(hostile, `() => ${expr}`);
    const stored = await run(hostile, `async (ctx) => { await ctx.ref('refused').set(${expr}); return 'stored'; }`);
    const readBack = await run(hostile, `(ctx) => ctx.ref('refused').get().then(() => 'read')`);
    // Either the value is refused where it is made (ERR_RESULT), or it round-trips; never a "malformed
    // MessagePack" protocol error for the caller, and never a stored value that nobody can read again.
    expect(returned.ok || returned.code === 'ERR_RESULT', `returned: ${codeOf(returned)}`).toBe(true);
    expect(stored.ok ? readBack.ok : codeOf(stored) === 'ERR_RESULT', `set: ${codeOf(stored)}, get: ${codeOf(readBack)}`).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // Leave the node's state readable for the next case.
    await tc.client.at(hostile, (ctx) => ctx.ref('refused').set(null));
    await nobodyHarmed();
  });

  it('commits nothing that a getter on the result writes after the function returned', async () => {
    const o = await run(
      hostile,
      `async (ctx) => { await ctx.ref('late').set('during'); return { get a() { ctx.ref('late').set('after return'); ctx.index('late').put('k', 'after return'); return 1; }, get b() { try { ctx.log('after return'); return 'logged'; } catch (e) { return e.code; } } }; }`,
    );
    expect(o.ok ? 'ok' : o.code).toBe('ok');
    if (o.ok) expect(o.value).toEqual({ a: 1, b: 'ERR_EVAL_ENDED' });
    expect(await tc.client.at(hostile, (ctx) => ctx.ref('late').get())).toBe('during');
    expect(await tc.client.at(hostile, (ctx) => ctx.index('late').get('k'))).toBeNull();
    await nobodyHarmed();
  });
});

describe('after the result', () => {
  it('commits nothing from a promise left dangling by an eval that returned', async () => {
    const o = await run(
      hostile,
      `(ctx) => { (async () => { for (let i = 0; i < 20; i++) await null; try { await ctx.ref('dangling').set('after return'); } catch (e) {} })(); return 'returned'; }`,
    );
    expect(codeOf(o)).toContain('returned');
    await run(hostile, `() => 'next'`);
    expect(await tc.client.at(hostile, (ctx) => ctx.ref('dangling').get())).toBeNull();
    await nobodyHarmed();
  });

  it('does not let work left spinning by one eval fail the next eval', async () => {
    // The function returns at once, but leaves a microtask loop that starts after its result was sent.
    const first = await run(hostile, `() => { (async () => { for (let i = 0; i < 50; i++) await null; for (;;) {} })(); return 'returned'; }`);
    // Its own eval may answer, or pay for the spin with a timeout; either way the spin is its own.
    expect(['ok: "returned"', 'ERR_EVAL_TIMEOUT']).toContain(codeOf(first));
    // The next eval, maybe another caller's, must run normally: the spin is the first eval's to pay for.
    const second = await run(hostile, `() => 'second'`);
    expect(codeOf(second)).toContain('second');
    await nobodyHarmed();
  });
});

describe('values rejected and left unhandled', () => {
  it("run none of their code in the worker's rejection handler, which Node calls after the eval has answered", async () => {
    // Each would spin if the handler touched it: toString, a stack getter, Proxy traps.
    const first = await run(
      hostile,
      `() => {
        Promise.reject({ toString() { for (;;) {} } });
        const e = new Error('x');
        Object.defineProperty(e, 'stack', { get() { for (;;) {} } });
        Promise.reject(e);
        Promise.reject(new Proxy({}, { getPrototypeOf() { for (;;) {} }, getOwnPropertyDescriptor() { for (;;) {} }, get() { for (;;) {} } }));
        return 'returned';
      }`,
    );
    expect(codeOf(first)).toContain('returned');
    // Had a handler spun after the answer, this eval (maybe another caller's) would pay for it with a timeout.
    const second = await run(hostile, `() => 'second'`);
    expect(codeOf(second)).toContain('second');
    await nobodyHarmed();
  });
});

describe('log spam', () => {
  it('caps what is kept, and the container keeps serving another node meanwhile', async () => {
    const { client } = tc;
    const logger = await client.spawn({ lifetime: Lifetime.root(), sandbox: { timeoutMs: 5000 } });
    const spam = `(ctx) => { const big = 'x'.repeat(20000); for (let i = 0; i < 100000; i++) ctx.log('line', i, big, { nested: big }); return 'done'; }`;
    let spamming = true;
    const latencies: number[] = [];
    const watcher = (async () => {
      while (spamming) {
        const t = Date.now();
        expect(await client.at(bystander, (ctx) => ctx.ref('canary').get())).toBe('alive');
        latencies.push(Date.now() - t);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const outcomes: string[] = [];
    try {
      for (let round = 0; round < 3; round++) outcomes.push(codeOf(await run(logger, spam)));
    } finally {
      spamming = false;
      await watcher;
    }
    for (const o of outcomes) expect(['ok: "done"', 'ERR_EVAL_TIMEOUT'], o).toContain(o);
    expect(latencies.length).toBeGreaterThan(0);
    // Every bystander call answered within its normal timeout while the spam ran.
    expect(Math.max(...latencies)).toBeLessThan(5000);

    const lines = await client.logs(logger, { limit: 10_000 });
    expect(lines.length, `${lines.length} log lines kept for a node configured to keep 1000`).toBeLessThanOrEqual(1000 + 5);
    for (const l of lines) expect(l.line.length).toBeLessThanOrEqual(8 * 1024 + 64);
    expect(await client.at(logger, () => 'ok')).toBe('ok');
    await nobodyHarmed();
  });
});
