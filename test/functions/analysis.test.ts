/**
 * The reading of a shipped function (protocol/function-source.ts), on its own: which names are free, what is
 * refused and with which words, and the rewriting that lets SES accept text it would refuse, checked against
 * plain JavaScript: the rewritten function must return exactly what the original returns.
 */
import { describe, expect, it } from 'vitest';
import { isKeynodeError } from 'keynode';
import { analyzeFunction, ESBUILD_HELPERS, rewriteScript, TSLIB_HELPERS } from '../../dist/protocol/function-source.js';

function refusal(source: string): string {
  try {
    analyzeFunction(source);
  } catch (e) {
    expect(isKeynodeError(e) && e.code).toBe('ERR_BAD_FUNCTION');
    return (e as Error).message;
  }
  throw new Error(`accepted: ${source}`);
}

/** What SES refuses (ses/src/transforms.js). */
const SES_REFUSES = [/(?:<!--|-->)/, /(^|[^.]|\.\.\.)\bimport(\s*(?:\(|\/[/*]))/];

function run(source: string, ...args: unknown[]): unknown {
  return (new Function(`"use strict"; return (${source}\n);`)() as (...a: unknown[]) => unknown)(undefined, ...args);
}

describe('free names', () => {
  it.each([
    ['(ctx, x) => x * (1 + TAX)', 'TAX'],
    ['() => helper(1)', 'helper'],
    ['function f(a, b = c) { return a + b }', 'c'],
    ['() => { const { a = dflt } = {}; return a }', 'dflt'],
    ['() => { for (const k in obj) {} }', 'obj'],
    ['() => { class A extends Base {} return A }', 'Base'],
    ['() => { class A { x = init } return new A() }', 'init'],
    ['() => { class A { [key]() {} } return A }', 'key'],
    ['() => ({ [key]: 1 })', 'key'],
    ['() => ({ shorthand })', 'shorthand'],
    ['(o) => { ({ a: target } = o) }', 'target'],
    ['() => { try {} catch { return caught } }', 'caught'],
    ['() => { { let inner = 1 } return inner }', 'inner'],
    ['() => `${tmpl}`', 'tmpl'],
    ['() => tag`x`', 'tag'],
    ['() => new Thing()', 'Thing'],
    ['() => arguments.length', 'arguments'],
    ['() => { switch (1) { case 1: let s = 1 } return s }', 's'],
    ['() => typeof x === "number" ? x : 0', 'x'],
  ])('%s: `%s` is free', (source, name) => {
    expect(refusal(source)).toContain(`\`${name}\``);
  });

  it.each([
    '(ctx, x) => { const y = x; return y }',
    'function f(n) { return n ? f(n - 1) : arguments.length }',
    '() => { var hoisted; { var hoisted = 1 } return hoisted }',
    '() => { later(); function later() {} }',
    '() => { if (true) { function inBlock() { return 1 } return inBlock() } }',
    '() => { class A { static m() { return A } } return A.m() }',
    '() => { const C = class Named { m() { return Named } }; return C }',
    '(o) => { let a, b; ({ a, b = a } = o); [a, b] = [b, a]; return a }',
    '() => { try { throw 1 } catch ({ message }) { return message } }',
    '() => { outer: for (const x of [1]) { for (;;) { break outer } } }',
    '() => { for (let i = 0, j = i; i < 1; i++) { j++ } }',
    '(o) => { for (const [k, { v }] of o) {} }',
    '() => typeof window === "undefined"',
    '() => [Math, JSON, Intl, URL, TextEncoder, crypto, structuredClone, console, globalThis, eval, undefined, NaN]',
    '() => { class A { #p = 1; static has(o) { return #p in o } } return A }',
    'function () { return new.target }',
    '() => ({ a: 1 }).a',
    '() => { const o = { m() { return this } }; return o.m() }',
    '(ctx, ...rest) => rest',
    '({ a, b: [c] }, d = a + c) => d',
  ])('%s is accepted', (source) => {
    expect(analyzeFunction(source).helpers).toEqual([]);
  });

  it('says what to do about each kind of name, with line and column', () => {
    expect(refusal('(ctx, x) =>\n  x * (1 + TAX)')).toBe('`TAX` is defined outside the function: pass it as an argument, `client.at(node, (ctx, TAX) => ..., TAX)`, or define it inside the function (line 2, column 12)');
    expect(refusal('() => [a, b]')).toMatch(/^`a` \(line 1, column 8\), `b` \(line 1, column 11\) are defined outside the function: pass them as arguments/);
    expect(refusal('() => _a.x')).toMatch(/`_a` looks like a helper or temporary variable your compiler \(tsc, esbuild, tsx\) put outside the function.*newer target/);
    expect(refusal('() => __classDecorators([])')).toMatch(/`__classDecorators`.*compiler/);
    expect(refusal('() => keynode_1.Lifetime.root()')).toMatch(/`keynode_1` is how your compiler names imports.*ctx\.Lifetime/);
    expect(refusal('() => __vi_import_0__.Lifetime.root()')).toMatch(/`__vi_import_0__` is how your compiler names imports/);
    expect(refusal('() => import_keynode.Lifetime')).toMatch(/`import_keynode` is how your compiler names imports/);
    expect(refusal('() => Lifetime.root()')).toMatch(/`Lifetime` is an import.*ctx\.Lifetime/);
    expect(refusal('() => setTimeout(() => 1, 1)')).toMatch(/^a node has no timers, so `setTimeout` cannot be used: .* \(line 1, column 7\)$/);
    expect(refusal('() => fetch("http://x")')).toMatch(/a node has no network, so `fetch`.*ctx\.at/);
    expect(refusal('() => process.env')).toMatch(/`process` is part of Node\.js, not of a node/);
    expect(refusal('() => require("fs")')).toMatch(/`require` is part of Node\.js/);
    expect(refusal('() => performance.now()')).toMatch(/`performance` is not available in a node/);
    expect(refusal('() => arguments[0]')).toMatch(/^`arguments` in an arrow function.*rest parameters.*\(line 1, column 7\)$/);
  });

  it('refuses what is not one function, naming why', () => {
    expect(refusal('f(ctx) { return 1 }')).toMatch(/method shorthand/);
    expect(refusal('class A {}')).toMatch(/a class cannot be shipped/);
    expect(refusal('function* g() {}')).toMatch(/generator function/);
    expect(refusal('x => x); evil(); (0')).toMatch(/not one function expression/);
    expect(refusal('1 + 1')).toMatch(/not one function expression/);
    expect(refusal('x => {\n  return x +\n}')).toBe('the function does not parse: Unexpected token (line 3, column 1)');
    expect(refusal('() => { with (o) {} }')).toMatch(/does not parse: .*strict mode/);
    expect(refusal('async () => (await import("fs")).readFileSync')).toBe('`import()` at line 1, column 20: a node cannot load modules; pass what you need as arguments, or call another node with ctx.at');
    expect(refusal('() => import.meta')).toMatch(/does not parse/);
    expect(refusal('')).toMatch(/empty/);
    expect(refusal('('.repeat(20_000) + ')'.repeat(20_000))).toMatch(/nests too deeply|does not parse/);
  });
});

describe('compiler helpers', () => {
  it('passes tsc helpers as tslib, and esbuild helpers as esbuild, by the names used', () => {
    expect(analyzeFunction('(ctx, o) => __awaiter(void 0, void 0, void 0, function* () { return __rest(o, ["a"]) })')).toMatchObject({ helpers: ['__awaiter', '__rest'], family: 'tslib' });
    expect(analyzeFunction('(ctx) => { class A { constructor() { __publicField(this, "x", 1) } } return __spreadValues({}, new A()) }')).toMatchObject({ helpers: ['__publicField', '__spreadValues'], family: 'esbuild' });
    // __await and __asyncGenerator exist in both, with different protocols: esbuild's is built with `new`.
    expect(analyzeFunction('() => __asyncGenerator(this, null, function* () { yield new __await(1) })')).toMatchObject({ family: 'esbuild' });
    expect(analyzeFunction('function g() { return __asyncGenerator(this, arguments, function* () { yield __await(1) }) }')).toMatchObject({ family: 'tslib' });
    expect(refusal('() => [__rest({}, []), __objRest({}, [])]')).toMatch(/helpers of two compilers/);
  });

  it('lists helper names that do not clash with globals', () => {
    for (const name of [...TSLIB_HELPERS, ...ESBUILD_HELPERS]) expect(name).toMatch(/^__[a-zA-Z]+$/);
  });
});

/** Text SES refuses, in every position a string can have. */
const NASTY = ['<!--', '-->', 'import(', 'import (', 'import/**/', 'import//', '<!---->', '--><!--', 'a<!--b-->c', '\\<!--', '\\\\-->', '`${"<!--"}`', "'<!--'", 'x\u2028<!--', 'é<!--🌍', '$import(', '${import(x)}'];

describe('rewriting what SES refuses', () => {
  it.each(NASTY)('a string literal, a template and a regex containing %j keep their value', (text) => {
    const literal = JSON.stringify(text);
    const template = '`' + text.replace(/\\/g, '\\\\').replace(/`/g, '\\`').replace(/\$\{/g, '\\${') + '`';
    const regexSource = text.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&').replace(/\u2028/g, '\\u2028');
    for (const source of [
      `() => ${literal}`,
      `() => ${template}`,
      `(ctx, s) => /${regexSource}/.test(s) && s.replace(/${regexSource}/g, '!')`,
      `() => ({ ${literal}: 1 })`,
      `() => [${literal}, { k: ${template} }].map((x) => typeof x === 'string' ? x.length : x)`,
      `() => { /* ${text.replace(/\*\//g, '')} */ return 1 } // ${text.replace(/[\n\u2028]/g, '')}`,
    ]) {
      const { source: rewritten } = analyzeFunction(source);
      for (const pattern of SES_REFUSES) expect(pattern.test(rewritten), `${source}\n→ ${rewritten}`).toBe(false);
      expect(run(rewritten, text), source).toStrictEqual(run(source, text));
    }
  });

  it('keeps code that only looks like it: a-- > b, $import(), o.import(), #import', () => {
    const source = `(ctx, n) => {
      let i = n, steps = 0;
      while (i-->0) steps++;
      const $import = (x) => x + 1;
      const o = { import: (x) => x * 2 };
      class C { #import(x) { return x - 1 } run(x) { return this.#import(x) } }
      return [steps, $import (1), o.import(2), new C().run(3)];
    }`;
    const { source: rewritten } = analyzeFunction(source);
    for (const pattern of SES_REFUSES) expect(pattern.test(rewritten), rewritten).toBe(false);
    expect(run(rewritten, 4)).toStrictEqual(run(source, 4));
  });

  it('rewrites a regular expression whose syntax contains the sequences (a lookbehind)', () => {
    const source = '(ctx, s) => s.match(/(?<!--)x/g)';
    const { source: rewritten } = analyzeFunction(source);
    expect(rewritten).not.toMatch(SES_REFUSES[0]!);
    expect(run(rewritten, 'x --x -x')).toStrictEqual(run(source, 'x --x -x'));
    // ...unless the function has its own RegExp, which the rewrite would call instead.
    expect(refusal('(s) => { const RegExp = 1; return /-->/.test(s) }')).toMatch(/defines its own `RegExp`/);
  });

  it('keeps line numbers when it blanks a comment', () => {
    const source = '() => {\n  /* <!--\n  -->\n  */\n  return new Error("x").stack.split("\\n")[1] }';
    expect(analyzeFunction(source).source.split('\n').length).toBe(source.split('\n').length);
  });

  it('leaves source without those sequences untouched (and does not rewrite at all on the fast path)', () => {
    const source = '(ctx, x) => { const s = "plain"; return /re/.test(s) ? x : 0 }';
    expect(analyzeFunction(source).source).toBe(source);
  });

  it('rewrites eval source too, and refuses a real import() in it', () => {
    expect(rewriteScript('1 + 1')).toBe('1 + 1');
    expect(new Function(`return ${rewriteScript('"<!--" + `-->`')}`)()).toBe('<!---->');
    expect(() => rewriteScript('import("fs")')).toThrow(SyntaxError);
    expect(() => rewriteScript('"<!--" +')).toThrow(SyntaxError);
  });
});
