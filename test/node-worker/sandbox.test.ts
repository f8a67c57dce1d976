import { describe, expect, it } from 'vitest';
import { Lifetime, type Ctx, type KeynodeError } from 'keynode';
import { startContainer } from '../helpers/containers.js';

/**
 * Each body runs as the user's function and returns `process.pid` if it got hold of `process`. Blocked means
 * it threw (ERR_USER / ERR_BAD_FUNCTION) or returned anything but a number.
 */
const escapes: Record<string, string> = {
  'process global': '() => process.pid',
  'globalThis.process': '() => globalThis.process.pid',
  require: "() => require('fs')",
  'module.require': "() => module.require('fs')",
  'dynamic import': "async () => (await import('node:fs')).readFileSync('/etc/passwd', 'utf8')",
  'import via Function': "() => Function('return import(\"node:fs\")')()",
  'Function constructor escape': "() => Function('return this')().process.pid",
  'constructor.constructor of ctx': "(ctx) => ctx.constructor.constructor('return process')().pid",
  'constructor of a ctx method': "(ctx) => ctx.ref.constructor('return process')().pid",
  'async function constructor': "async () => (async function(){}).constructor('return process')()",
  'generator function constructor': "() => (function*(){}).constructor('return process')().next()",
  'indirect eval': "() => (0, eval)('process').pid",
  'this at top of sloppy function': "function () { return this.process.pid }",
  'arguments.callee.caller': 'function f() { return f.caller.constructor("return process")() }',
  'Error.prepareStackTrace': "() => { Error.prepareStackTrace = (e, s) => s[0].getThis(); const t = new Error().stack; return t && t.process ? t.process.pid : null }",
  'host globals': "() => [typeof setTimeout, typeof setImmediate, typeof fetch, typeof Buffer, typeof WebAssembly, typeof SharedArrayBuffer, typeof process].join() === 'undefined,undefined,undefined,undefined,undefined,undefined,undefined' ? (() => { throw new Error('blocked') })() : 'leak'",
  'process via console': "() => { const c = console; return [c.log, c.constructor, Object.getPrototypeOf(c)].some((x) => x && x.process) ? 'leak' : (() => { throw new Error('blocked') })() }",
  'process via a URL': "() => { const u = new URL('http://a'); for (const p of [u, Object.getPrototypeOf(u), u.searchParams]) for (const k of Reflect.ownKeys(p)) { try { const v = p[k]; if (v && typeof v === 'object' && 'pid' in v) return v.pid; } catch {} } throw new Error('blocked') }",
  'Function constructor via a web global': "() => URL.constructor('return process')().pid",
  'host require via an Intl constructor': "() => Intl.NumberFormat.constructor('return require')()('fs')",
  'eval reaching the caller': "() => { const process = 'local'; return eval('typeof process === \"undefined\" ? null : process.pid') }",
};

describe('sandbox', () => {
  it.each(Object.entries(escapes))('blocks %s', async (_name, source) => {
    const { client } = await shared();
    const outcome = await client.at(node, new Function(`return ${source}`)() as () => unknown).then(
      (value) => ({ value, code: undefined }),
      (e: KeynodeError) => ({ value: undefined, code: e.code }),
    );
    expect(typeof outcome.value).not.toBe('number');
    if (outcome.code !== undefined) expect(['ERR_USER', 'ERR_BAD_FUNCTION']).toContain(outcome.code);
    // The node keeps serving, and its state is untouched.
    expect(await client.at(node, (ctx) => ctx.ref('canary').get())).toBe('alive');
  });

  it('freezes intrinsics and globals, so one eval cannot poison the next', async () => {
    const { client } = await shared();
    const attempts = await client.at(node, () => {
      const results: string[] = [];
      const tryIt = (name: string, f: () => void) => {
        try {
          f();
          results.push(`${name}: changed`);
        } catch {
          results.push(`${name}: refused`);
        }
      };
      tryIt('Array.prototype', () => { (Array.prototype as unknown as Record<string, unknown>).evil = 1; });
      tryIt('Object.prototype', () => { Object.defineProperty(Object.prototype, 'polluted', { value: 1 }); });
      tryIt('JSON.parse', () => { (JSON as unknown as Record<string, unknown>).parse = () => 'evil'; });
      tryIt('globalThis', () => { (globalThis as unknown as Record<string, unknown>).stash = 'left behind'; });
      return results;
    });
    expect(attempts).toEqual(['Array.prototype: refused', 'Object.prototype: refused', 'JSON.parse: refused', 'globalThis: refused']);
    const next = await client.at(node, () => [typeof ([] as unknown as Record<string, unknown>).evil, JSON.parse('1'), typeof (globalThis as unknown as Record<string, unknown>).stash]);
    expect(next).toEqual(['undefined', 1, 'undefined']);
  });

  it('hands each eval a ctx frozen all the way down (its refs and indexes too)', async () => {
    const { client } = await shared();
    const unfrozen = await client.at(node, (ctx) => {
      const found: string[] = [];
      const seen = new Set<unknown>();
      const walk = (v: unknown, path: string): void => {
        if ((typeof v !== 'object' || v === null) && typeof v !== 'function') return;
        if (seen.has(v) || seen.size > 5000) return;
        seen.add(v);
        if (!Object.isFrozen(v)) found.push(path);
        for (const k of Reflect.ownKeys(v as object)) {
          const d = Object.getOwnPropertyDescriptor(v, k)!;
          for (const x of [d.value, d.get, d.set]) walk(x, `${path}.${String(k)}`);
        }
        walk(Object.getPrototypeOf(v), `${path}.[[Prototype]]`);
      };
      walk(ctx, 'ctx');
      walk(ctx.ref('x'), 'ref');
      walk(ctx.index('i'), 'index');
      return found;
    });
    expect(unfrozen).toEqual([]);
  });

  it('gives ctx only what the sandbox grants', async () => {
    const { client } = await shared();
    const readOnly = await client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'read' } });
    expect(await client.at(readOnly, (ctx) => ctx.ref('x').get())).toBeNull(); // MessagePack has no undefined
    const write = (await client.at(readOnly, (ctx) => ctx.ref('x').set(1)).catch((e: unknown) => e)) as KeynodeError;
    expect(write.code).toBe('ERR_SANDBOX');
    const none = await client.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'none' } });
    const read = (await client.at(none, (ctx) => ctx.ref('x').get()).catch((e: unknown) => e)) as KeynodeError;
    expect(read.code).toBe('ERR_SANDBOX');
    const spawn = (await client.at(none, (ctx) => ctx.spawn({ lifetime: { kind: 'root' } })).catch((e: unknown) => e)) as KeynodeError;
    expect(spawn.code).toBe('ERR_SANDBOX');
  });

  it('refuses names and keys that could not be stored as given, and stores every other one exactly', async () => {
    const { client } = await shared();
    const refused = [
      (ctx: Ctx) => ctx.ref('').set(1),
      (ctx: Ctx) => ctx.ref('a\u0000b').set(1),
      (ctx: Ctx) => ctx.ref('n'.repeat(257)).set(1),
      // A leading U+FEFF: UTF-8 decoders drop it as a byte-order mark, so it could be written under one key and read under another.
      (ctx: Ctx) => ctx.ref('\uFEFFcounter').set(1),
      (ctx: Ctx) => ctx.index('i').put('\uFEFFk', 1),
      (ctx: Ctx) => ctx.index('i').get('k'.repeat(1025)),
    ];
    for (const f of refused) expect(await client.at(node, f).then(() => 'ok', (e: KeynodeError) => e.code), String(f)).toBe('ERR_BAD_MESSAGE');
    const names = ['n'.repeat(256), 'é∑😀 x', 'x\uFEFF', '\uD800'];
    const keys = ['', 'k'.repeat(1024), 'ключ 😀', 'k\uFEFF'];
    await client.at(node, async (ctx, names: string[], keys: string[]) => {
      for (const n of names) await ctx.ref(n).set(n.length);
      for (const k of keys) await ctx.index('exact').put(k, k.length);
    }, names, keys);
    const read = await client.at(node, async (ctx, names: string[], keys: string[]) => [
      await Promise.all(names.map((n) => ctx.ref(n).get())),
      await Promise.all(keys.map((k) => ctx.index('exact').get(k))),
      (await ctx.index('exact').entries()).length,
    ], names, keys);
    // A lone surrogate is stored as UTF-8's replacement character, under which it is read back too.
    expect(read).toEqual([names.map((n) => n.length), keys.map((k) => k.length), keys.length]);
  });

  it('reports user errors with name, message and code, never as container failures', async () => {
    const { client } = await shared();
    const err = (await client
      .at(node, () => {
        throw Object.assign(new TypeError('bad input'), { code: 'E_INPUT' });
      })
      .catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_USER');
    expect(err.remote).toMatchObject({ name: 'TypeError', message: 'bad input', code: 'E_INPUT' });
    // A forged keynode error is still the user's own error.
    const forged = (await client
      .at(node, async (ctx) => {
        try {
          await ctx.ref('').get();
        } catch (e) {
          const Ctor = (e as { constructor: new (c: string, m: string) => Error }).constructor;
          throw new Ctor('ERR_ACCESS_DENIED', 'forged');
        }
      })
      .catch((e: unknown) => e)) as KeynodeError;
    expect(forged.code).toBe('ERR_USER');
  });
});

let node: string;
let ready: Promise<Awaited<ReturnType<typeof startContainer>>> | undefined;
function shared() {
  ready ??= startContainer().then(async (tc) => {
    node = (await tc.client.spawn({ lifetime: Lifetime.root() })).id;
    await tc.client.at(node, (ctx) => ctx.ref('canary').set('alive'));
    return tc;
  });
  return ready;
}
