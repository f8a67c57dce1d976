/**
 * Shipping a function as people write one: outside variables, helpers and imports are refused before
 * anything is sent, with the name, what to do and where; the node reads every function again, so source
 * that never went through the client's check (a raw envelope, a capability or lease bound as a string,
 * ctx.at from inside a node) is refused there with the same words. Compiled code and text SES would refuse
 * run; a real import() does not.
 */
import { decode as msgpackDecode } from '@msgpack/msgpack';
import ts from 'typescript';
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { isKeynodeError, Lifetime, type KeynodeError, type NodeHandle } from 'keynode';
import { encode, sealEnvelope } from '../../dist/protocol/index.js';
import { startContainer, type TestContainer } from '../helpers/containers.js';

/** A function as tsc compiles it at `target`, helpers at the top of its file. */
function compiled(src: string, target: ts.ScriptTarget): (...a: never[]) => unknown {
  const out = ts.transpileModule(`export const fn = ${src};`, { compilerOptions: { target, module: ts.ModuleKind.CommonJS } }).outputText;
  const m = { exports: {} as { fn: (...a: never[]) => unknown } };
  new Function('exports', 'module', out)(m.exports, m);
  return m.exports.fn;
}

let tc: TestContainer;
let node: NodeHandle;
let rest: (...a: never[]) => unknown;
let awaiter: (...a: never[]) => unknown;

beforeAll(async () => {
  // Compiled before the container starts: the compiler's first run holds this process (and an in-process
  // container's event loop) for seconds.
  rest = compiled('(ctx: unknown, o: Record<string, number>) => { const { a, ...others } = o; return others; }', ts.ScriptTarget.ES2017);
  awaiter = compiled('async (ctx: unknown, x: number) => { const y = await Promise.resolve(x); return y * 2; }', ts.ScriptTarget.ES2015);
  tc = await startContainer();
  node = await tc.client.spawn({ lifetime: Lifetime.root() });
});

async function failure(p: Promise<unknown>): Promise<KeynodeError> {
  const e = await p.then(
    (v) => new Error(`resolved with ${JSON.stringify(v)}`),
    (err: unknown) => err,
  );
  expect(isKeynodeError(e), String(e)).toBe(true);
  return e as KeynodeError;
}

/** An eval whose source skips the client's check: what a hostile or foreign client could send. */
async function raw(fn: string, args: unknown[] = []): Promise<{ ok: boolean; code?: string; message?: string; value?: unknown }> {
  const body = sealEnvelope(tc.operator, 'eval', node.id, { fn, args: encode(args) }, Date.now(), tc.client.containerId);
  const res = await request(`${tc.url}/${node.id}`, { method: 'POST', body, headers: { 'content-type': 'application/msgpack' } });
  const reply = msgpackDecode(new Uint8Array(await res.body.arrayBuffer())) as { ok: boolean; value?: Uint8Array; error?: { code: string; message: string } };
  return reply.ok ? { ok: true, value: msgpackDecode(reply.value!) } : { ok: false, code: reply.error!.code, message: reply.error!.message };
}

const TAX = 0.2;
function helper(x: number): number {
  return x + 1;
}

describe('the client refuses before sending', () => {
  it('an outside variable, naming it and saying to pass it as an argument', async () => {
    const e = await failure(tc.client.at(node, (_ctx, x: number) => x * (1 + TAX), 100));
    expect(e.code).toBe('ERR_BAD_FUNCTION');
    expect(e.message).toMatch(/^`TAX` is defined outside the function: pass it as an argument, `client.at\(node, \(ctx, TAX\) => \.\.\., TAX\)`, or define it inside the function \(line 1, column \d+\)$/);
    // What the message says to do works.
    expect(await tc.client.at(node, (_ctx, x: number, tax: number) => x * (1 + tax), 100, TAX)).toBe(120);
  });

  it('a helper function of the same file and an import, each with its own hint', async () => {
    const e1 = await failure(tc.client.at(node, () => helper(1)));
    expect(e1.message).toMatch(/`helper` is defined outside the function/);
    // vitest compiles this file: the import of Lifetime becomes `__vi_import_N__.Lifetime`.
    const e2 = await failure(tc.client.at(node, () => Lifetime.root()));
    expect(e2.message).toMatch(/is how your compiler names imports of the file around the function; .*ctx\.Lifetime/);
  });

  it('what a node does not have: timers, the network, Node.js', async () => {
    const make = (src: string) => new Function(`return ${src}`)() as () => unknown;
    expect((await failure(tc.client.at(node, make('() => new Promise((r) => setTimeout(r, 10))')))).message).toMatch(/a node has no timers, so `setTimeout` cannot be used/);
    expect((await failure(tc.client.at(node, make('async () => (await fetch("http://127.0.0.1")).status')))).message).toMatch(/a node has no network, so `fetch` cannot be used/);
    expect((await failure(tc.client.at(node, make('() => process.pid')))).message).toMatch(/`process` is part of Node\.js, not of a node/);
  });

  it('import(), classes, generators, bound and native functions, method shorthand', async () => {
    const make = (src: string) => new Function(`return ${src}`)() as () => unknown;
    expect((await failure(tc.client.at(node, make('async () => import("node:fs")')))).message).toMatch(/^`import\(\)` at line 1, column 13: a node cannot load modules/);
    expect((await failure(tc.client.at(node, class A {} as unknown as () => unknown))).message).toMatch(/a class cannot be shipped/);
    expect((await failure(tc.client.at(node, function* gen() {} as unknown as () => unknown))).message).toMatch(/generator function/);
    expect((await failure(tc.client.at(node, ((x: number) => x).bind(null, 1)))).message).toMatch(/bound function/);
    expect((await failure(tc.client.at(node, Math.max as () => unknown))).message).toMatch(/native or bound/);
    expect((await failure(tc.client.at(node, { f(_ctx: unknown) { return 1; } }.f))).message).toMatch(/method shorthand/);
  });

  it('a lease check or capability bound with an outside variable, at spawn', async () => {
    const limit = 3;
    await expect((async () => tc.client.spawn({ lifetime: Lifetime.leased(60, { node, fn: () => limit > 1 }) }))()).rejects.toMatchObject({ code: 'ERR_BAD_FUNCTION', message: expect.stringMatching(/`limit` is defined outside/) });
    await expect((async () => tc.client.spawn({ lifetime: Lifetime.root(), sandbox: { capabilities: { read: { node, fn: () => limit } } } }))()).rejects.toMatchObject({ code: 'ERR_BAD_FUNCTION' });
  });
});

describe('the node refuses too, whatever the client did', () => {
  it.each([
    ['an outside variable', '(ctx, x) => x * (1 + TAX)', /^`TAX` is defined outside the function: pass it as an argument.*\(line 1, column 22\)$/],
    ['a compiler temporary', '(ctx) => _a.value', /`_a` looks like a helper or temporary variable your compiler/],
    ['an import of the file', '() => keynode_1.Lifetime.root()', /`keynode_1` is how your compiler names imports/],
    ['import()', 'async () => (await import("node:fs")).readFileSync("/etc/passwd", "utf8")', /`import\(\)` at line 1, column 20/],
    ['import() built from Function', '() => Function("return import(\'node:fs\')")()', /^ERR_USER|import/],
    ['source that is not one function', '() => 1); globalThis.x = 1; (() => 2', /not one function expression/],
    ['a syntax error, with its place', '(ctx) => {\n  return 1 +\n}', /^the function does not parse: Unexpected token \(line 3, column 1\)$/],
    ['a method shorthand', 'run(ctx) { return 1 }', /method shorthand/],
    ['helpers of two compilers', '() => [__rest({}, []), __objRest({}, [])]', /two compilers/],
  ])('%s', async (_name, source, pattern) => {
    const r = await raw(source);
    expect(r.ok).toBe(false);
    if (r.code === 'ERR_USER') expect(r.message).toMatch(pattern);
    else {
      expect(r.code).toBe('ERR_BAD_FUNCTION');
      expect(r.message).toMatch(pattern);
    }
    // The node keeps serving.
    expect(await raw('() => "still here"')).toEqual({ ok: true, value: 'still here' });
  });

  it('refuses a function ctx.at would ship with a variable of the function around it, at the caller', async () => {
    const caller = await tc.client.spawn({ lifetime: Lifetime.root(), sandbox: { spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 1 } });
    const e = await failure(
      tc.client.at(caller, (ctx) => {
        const secret = 41;
        return ctx.at(ctx.here, () => secret + 1);
      }),
    );
    expect(e.code).toBe('ERR_BAD_FUNCTION');
    expect(e.message).toMatch(/`secret` is defined outside the function/);
    // Passed as an argument, it works.
    expect(
      await tc.client.at(caller, async (ctx) => {
        const kid = await ctx.spawn({ lifetime: ctx.Lifetime.linked() });
        return ctx.at(kid, (_c, s: number) => s + 1, 41);
      }),
    ).toBe(42);
  });

  it('refuses a capability bound as a string with an outside variable when it is called', async () => {
    const owner = await tc.client.spawn({ lifetime: Lifetime.root() });
    const guest = await tc.client.spawn({ lifetime: Lifetime.root(), sandbox: { capabilities: { peek: { node: owner, fn: '(ctx) => HIDDEN' } } } });
    const e = await failure(tc.client.at(guest, (ctx) => ctx.caps.peek!()));
    expect(e.code).toBe('ERR_BAD_FUNCTION');
    expect(e.message).toMatch(/`HIDDEN` is defined outside the function/);
  });

  it('answers a repeated bad function from its cache, the same way', async () => {
    const first = await raw('() => [missingName]');
    const again = await raw('() => [missingName]');
    expect(again).toEqual(first);
    expect(first.message).toMatch(/`missingName`/);
  });
});

describe('what runs', () => {
  it('text with <!--, --> and import( in strings, templates, regexes and comments, as in Node', async () => {
    expect(await tc.client.at(node, () => '<p>hi</p><!-- note -->')).toBe('<p>hi</p><!-- note -->');
    expect(await tc.client.at(node, (_ctx, s: string) => /-->/.test(s), 'a-->b')).toBe(true);
    expect(await tc.client.at(node, () => 'use import(x) to load')).toBe('use import(x) to load');
    expect(
      await tc.client.at(node, (_ctx, n: number) => {
        // <!-- a comment --> that mentions import('x')
        let i = n;
        let k = 0;
        while (i-- > 0) k++;
        return `${k}<!--${i}-->`;
      }, 3),
    ).toBe('3<!---1-->');
  });

  it('compiled TypeScript: tsc ES2017 object rest and ES2015 async (__rest, __awaiter, __generator)', async () => {
    expect(Function.prototype.toString.call(rest)).toContain('__rest(');
    expect(await tc.client.at(node, rest, { a: 1, b: 2 })).toEqual({ b: 2 });
    expect(Function.prototype.toString.call(awaiter)).toContain('__awaiter(');
    expect(await tc.client.at(node, awaiter, 21)).toBe(42);
  });

  it('every tslib and esbuild helper a node provides is a function there', async () => {
    const { TSLIB_HELPERS, ESBUILD_HELPERS } = await import('../../dist/protocol/function-source.js');
    const tslib = (await import('tslib')) as unknown as Record<string, unknown>;
    for (const name of TSLIB_HELPERS) expect(typeof tslib[name], name).toBe('function');
    for (const names of [TSLIB_HELPERS, ESBUILD_HELPERS]) {
      const probe = new Function(`return () => [${names.join(', ')}].map((f) => typeof f)`)() as () => string[];
      expect(await tc.client.at(node, probe)).toEqual(names.map(() => 'function'));
    }
  });
});
