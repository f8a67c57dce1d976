/**
 * Ordinary functions, as people write them, each with the arguments it is called with. The corpus test
 * compiles this file with tsc (ESNext, ES2022, ES2020, ES2017) and esbuild (its defaults, es2017, tsx's
 * options), then runs every function both in plain Node and in a node and compares the results.
 *
 * Rules for an entry: the function closes over nothing (a shipped function cannot), is deterministic (no
 * Math.random, no Date.now, explicit locales and time zones), and returns what MessagePack can carry. This
 * file imports nothing but types, so every compiled copy of it runs on its own.
 */
import type { Ctx } from 'keynode';

export interface Case {
  name: string;
  fn: (ctx: Ctx, ...args: any[]) => unknown;
  args: unknown[];
}

const cases: Case[] = [];
function c<A extends unknown[]>(name: string, fn: (ctx: Ctx, ...args: A) => unknown, ...args: A): void {
  cases.push({ name, fn: fn as Case['fn'], args });
}

// ---- strings ----
c('reverse words', (_ctx, s: string) => s.split(' ').reverse().join(' '), 'the quick brown fox');
c('capitalize', (_ctx, s: string) => s.replace(/\b\w/g, (m) => m.toUpperCase()), 'hello there, general kenobi');
c('padding and repeat', (_ctx, n: number) => [String(n).padStart(6, '0'), 'ab'.repeat(3), 'x'.padEnd(4, '-')], 42);
c('unicode code points', (_ctx, s: string) => [...s].map((ch) => ch.codePointAt(0)!.toString(16)), 'héllo 🌍');
c('normalize', (_ctx, s: string) => [s.normalize('NFD').length, s.normalize('NFC').length], 'é');
c('trim variants', (_ctx, s: string) => [s.trim(), s.trimStart(), s.trimEnd()], '  spaced  ');
c('at and slice', (_ctx, s: string) => [s.at(-1), s.slice(1, -1), s.substring(2)], 'keynode');
c('replaceAll', (_ctx, s: string) => s.replaceAll('a', 'A'), 'banana bandana');
c('startsWith endsWith includes', (_ctx, s: string) => [s.startsWith('key'), s.endsWith('node'), s.includes('yn')], 'keynode');
c('char frequency', (_ctx, s: string) => {
  const freq: Record<string, number> = {};
  for (const ch of s) freq[ch] = (freq[ch] ?? 0) + 1;
  return Object.entries(freq).sort(([a], [b]) => (a < b ? -1 : 1));
}, 'mississippi');
c('palindromes', (_ctx, words: string[]) => words.filter((w) => w === [...w].reverse().join('')), ['level', 'node', 'racecar', 'kayak', 'key']);
c('caesar cipher', (_ctx, s: string, k: number) => s.replace(/[a-z]/g, (ch) => String.fromCharCode(((ch.charCodeAt(0) - 97 + k) % 26) + 97)), 'attack at dawn', 3);
c('slugify', (_ctx, title: string) => title.toLowerCase().normalize('NFKD').replace(/[\u0300-\u036f]/g, '').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, ''), 'Crème Brûlée: A Recipe!');
c('word wrap', (_ctx, text: string, width: number) => {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && (line + ' ' + word).length > width) {
      lines.push(line);
      line = word;
    } else line = line ? line + ' ' + word : word;
  }
  if (line) lines.push(line);
  return lines;
}, 'the quick brown fox jumps over the lazy dog and keeps running far away', 16);
c('template literals', (_ctx, name: string, n: number) => `Hello ${name}, you have ${n} new ${n === 1 ? 'message' : 'messages'}`, 'Ada', 3);
c('multiline template', (_ctx, rows: string[]) => `<ul>
${rows.map((r) => `  <li>${r}</li>`).join('\n')}
</ul>`, ['one', 'two']);
c('String.raw', () => String.raw`C:\temp\new\table`);
c('tagged template', (_ctx, who: string) => {
  const tag = (strings: TemplateStringsArray, ...values: unknown[]) => strings.raw.map((s, i) => s + (i < values.length ? `[${String(values[i])}]` : '')).join('');
  return tag`hi ${who}, it is ${2 + 2}\n`;
}, 'bob');
c('localeCompare sort', (_ctx, words: string[]) => [...words].sort((a, b) => a.localeCompare(b, 'de')), ['Zebra', 'äpfel', 'Apfel', 'zoo', 'Ähre']);
c('toUpperCase unicode', (_ctx, s: string) => [s.toUpperCase(), s.toLocaleUpperCase('tr-TR'), s.toLocaleLowerCase('en-US')], 'istanbul Straße');
c('split with limit and regex', (_ctx, s: string) => [s.split(',', 2), s.split(/\s*,\s*/)], 'a , b,c ,d');
c('escape html', (_ctx, s: string) => s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!), '<a href="x">Tom & Jerry\'s</a>');
c('count vowels', (_ctx, s: string) => (s.match(/[aeiou]/gi) ?? []).length, 'Programming In JavaScript');
c('levenshtein', (_ctx, a: string, b: string) => {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length];
}, 'kitten', 'sitting');

// ---- text that SES refuses unless rewritten ----
c('html comment in a string', () => '<p>hi</p><!-- note -->');
c('html close comment in a regex', (_ctx, s: string) => /-->/.test(s), 'a --> b');
c('import( in a string', () => 'use import(x) to load');
c('import( in a template', (_ctx, m: string) => `call import(${JSON.stringify(m)}) at runtime`, 'fs');
c('html comment in a template with expressions', (_ctx, a: number) => `x<!--${a}-->y${a * 2}`, 21);
c('comments with html and import(', (_ctx, x: number) => {
  // <!-- a comment that looks like HTML -->
  /* and one that mentions import('fs') */
  return x + 1;
}, 1);
c('decrement then greater-than', (_ctx, n: number) => {
  let i = n;
  let steps = 0;
  while (i-- > 0) steps++;
  return [steps, i];
}, 4);
c('regex with lookbehind of dashes', (_ctx, s: string) => s.match(/(?<!-)->/g)?.length ?? 0, 'a->b-->c->d');
c('regex with import(', (_ctx, s: string) => /import\(['"]([^'"]+)['"]\)/.exec(s)?.[1] ?? null, "await import('./mod.js')");
c('a string of every sequence', () => ['<!--', '-->', 'import(', 'import /* x */', '<!---->'].join('|'));
c('html page builder', (_ctx, title: string) => `<!DOCTYPE html><html><!-- generated --><head><title>${title}</title></head><body><script>/* import(x) */</script></body></html>`, 'Page');
c('property named import', (_ctx, n: number) => {
  const loader = { import: (x: number) => x * 2 };
  return loader.import(n);
}, 21);
c('json with html comment', (_ctx, s: string) => JSON.parse(s), '{"note":"<!-- keep -->","n":1}');

// ---- JSON ----
c('JSON round trip', (_ctx, o: unknown) => JSON.parse(JSON.stringify(o)), { a: [1, 2, { b: 'c' }], d: null, e: true });
c('JSON pretty', (_ctx, o: unknown) => JSON.stringify(o, null, 2), { a: 1, b: [1, 2] });
c('JSON replacer', (_ctx, o: Record<string, unknown>) => JSON.stringify(o, (k, v) => (k === 'secret' ? undefined : v)), { user: 'x', secret: 'y', n: 1 });
c('JSON reviver dates', (_ctx, s: string) => JSON.parse(s, (k, v) => (k === 'at' ? new Date(v as string) : v)), '{"at":"2024-01-02T03:04:05.000Z","n":1}');
c('JSON parse error', (_ctx, s: string) => {
  try {
    return JSON.parse(s);
  } catch (e) {
    return (e as Error).name;
  }
}, '{bad json');
c('JSON toJSON', () => JSON.stringify({ when: new Date(Date.UTC(2020, 1, 29)), custom: { toJSON: () => 'custom!' } }));
c('deep merge', (_ctx, a: Record<string, any>, b: Record<string, any>) => {
  const merge = (x: any, y: any): any => {
    if (typeof x !== 'object' || typeof y !== 'object' || x === null || y === null || Array.isArray(x)) return y;
    const out: Record<string, any> = { ...x };
    for (const k of Object.keys(y)) out[k] = k in x ? merge(x[k], y[k]) : y[k];
    return out;
  };
  return merge(a, b);
}, { a: { b: 1, c: [1] }, d: 1 }, { a: { c: [2], e: 3 }, f: 4 });
c('flatten object', (_ctx, o: Record<string, unknown>) => {
  const out: Record<string, unknown> = {};
  const walk = (v: unknown, path: string) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
    else out[path] = v;
  };
  walk(o, '');
  return out;
}, { a: { b: { c: 1 }, d: [1, 2] }, e: 'x' });

// ---- regular expressions ----
c('named groups', (_ctx, s: string) => {
  const m = /(?<year>\d{4})-(?<month>\d{2})-(?<day>\d{2})/.exec(s);
  return m?.groups ? { ...m.groups } : null;
}, 'on 2024-03-15 we met');
c('matchAll', (_ctx, s: string) => [...s.matchAll(/(\w)(\d)/g)].map((m) => [m[0], m[1], m[2], m.index]), 'a1 b2 c3');
c('sticky flag', (_ctx, s: string) => {
  const re = /\d+/y;
  re.lastIndex = 3;
  return [re.test(s), re.lastIndex];
}, 'abc123');
c('dotAll and multiline', (_ctx, s: string) => [/a.b/s.test(s), s.match(/^\w+$/gm)], 'a\nb\nline\nend');
c('unicode property escapes', (_ctx, s: string) => s.match(/\p{Lu}/gu), 'Hello Wörld Ä Ω');
c('replace with function and groups', (_ctx, s: string) => s.replace(/(\d+)\s*(kg|g)/g, (_m, n: string, unit: string) => `${unit === 'kg' ? Number(n) * 1000 : n}g`), '2 kg of flour, 300 g of sugar');
c('email validation', (_ctx, list: string[]) => list.map((e) => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(e)), ['a@b.co', 'no at', 'x@y', 'first.last@domain.org']);
c('regex source and flags', () => {
  const re = new RegExp('a+b', 'gi');
  return [re.source, re.flags, String(re)];
});
c('split camelCase', (_ctx, s: string) => s.split(/(?=[A-Z])/).map((w) => w.toLowerCase()), 'splitCamelCaseWords');
c('lookahead password', (_ctx, pw: string[]) => pw.map((p) => /^(?=.*\d)(?=.*[a-z])(?=.*[A-Z]).{8,}$/.test(p)), ['Password1', 'password', 'PASS1234x', 'Ab1']);

// ---- classes and private fields ----
c('class with private field', (_ctx, n: number) => {
  class Counter {
    #count = 0;
    inc() {
      return ++this.#count;
    }
  }
  const counter = new Counter();
  for (let i = 0; i < n; i++) counter.inc();
  return counter.inc();
}, 4);
c('static members and blocks', () => {
  class Registry {
    static items: string[] = [];
    static count = 0;
    static {
      Registry.items.push('boot');
    }
    static add(x: string) {
      Registry.items.push(x);
      return ++Registry.count;
    }
  }
  Registry.add('a');
  Registry.add('b');
  return [Registry.items, Registry.count];
});
c('private methods and getters', (_ctx, w: number, h: number) => {
  class Rect {
    #w: number;
    #h: number;
    constructor(w: number, h: number) {
      this.#w = w;
      this.#h = h;
    }
    #area() {
      return this.#w * this.#h;
    }
    get area() {
      return this.#area();
    }
    static isRect(x: unknown) {
      return typeof x === 'object' && x !== null && #w in x;
    }
  }
  const r = new Rect(w, h);
  return [r.area, Rect.isRect(r), Rect.isRect({})];
}, 3, 4);
c('inheritance and super', (_ctx, name: string) => {
  class Animal {
    constructor(public name: string) {}
    speak() {
      return `${this.name} makes a sound`;
    }
  }
  class Dog extends Animal {
    override speak() {
      return `${super.speak()} (woof)`;
    }
  }
  return [new Dog(name).speak(), new Dog(name) instanceof Animal];
}, 'Rex');
c('class fields with arrow methods', () => {
  class Button {
    label = 'ok';
    clicks = 0;
    onClick = () => {
      this.clicks++;
      return this.label;
    };
  }
  const b = new Button();
  const handler = b.onClick;
  handler();
  return [handler(), b.clicks];
});
c('class returned as plain data', (_ctx, items: [string, number][]) => {
  class Cart {
    lines: { sku: string; qty: number }[] = [];
    add(sku: string, qty: number) {
      this.lines.push({ sku, qty });
      return this;
    }
    toJSON() {
      return { lines: this.lines, total: this.lines.reduce((s, l) => s + l.qty, 0) };
    }
  }
  const cart = new Cart();
  for (const [s, q] of items) cart.add(s, q);
  return JSON.parse(JSON.stringify(cart));
}, [['a', 1], ['b', 2]]);
c('getters and setters', () => {
  class Temp {
    private c = 0;
    get f() {
      return (this.c * 9) / 5 + 32;
    }
    set f(v: number) {
      this.c = ((v - 32) * 5) / 9;
    }
  }
  const t = new Temp();
  t.f = 212;
  return [t.f, Object.keys(t)];
});
c('abstract pattern and polymorphism', (_ctx, shapes: [string, number][]) => {
  abstract class Shape {
    abstract area(): number;
    describe() {
      return `${this.constructor.name}:${this.area().toFixed(2)}`;
    }
  }
  class Circle extends Shape {
    constructor(private r: number) {
      super();
    }
    area() {
      return Math.PI * this.r ** 2;
    }
  }
  class Square extends Shape {
    constructor(private s: number) {
      super();
    }
    area() {
      return this.s ** 2;
    }
  }
  return shapes.map(([k, v]) => (k === 'circle' ? new Circle(v) : new Square(v)).describe());
}, [['circle', 1], ['square', 2]]);
c('Symbol.iterator on a class', () => {
  class Range {
    constructor(private from: number, private to: number) {}
    *[Symbol.iterator]() {
      for (let i = this.from; i <= this.to; i++) yield i;
    }
  }
  return [...new Range(3, 7)];
});
c('private static', () => {
  class Id {
    static #next = 1;
    static make() {
      return Id.#next++;
    }
  }
  return [Id.make(), Id.make(), Id.make()];
});
c('class expression', () => {
  const Pair = class {
    constructor(readonly a: number, readonly b: number) {}
    sum() {
      return this.a + this.b;
    }
  };
  return new Pair(2, 3).sum();
});
c('error subclass', () => {
  class ValidationError extends Error {
    constructor(readonly field: string) {
      super(`invalid ${field}`);
      this.name = 'ValidationError';
    }
  }
  try {
    throw new ValidationError('email');
  } catch (e) {
    return [e instanceof ValidationError, e instanceof Error, (e as ValidationError).name, (e as ValidationError).message, (e as ValidationError).field];
  }
});
c('mixins', () => {
  type Ctor<T = object> = new (...args: any[]) => T;
  const Timestamped = <B extends Ctor>(Base: B) => class extends Base { stamp = 'T' };
  const Named = <B extends Ctor>(Base: B) => class extends Base { name = 'N' };
  class Plain {}
  const Both = Named(Timestamped(Plain));
  const x = new Both();
  return [x.stamp, x.name];
});

// ---- generators and async iteration ----
c('generator', (_ctx, n: number) => {
  function* fib() {
    let [a, b] = [0, 1];
    for (;;) {
      yield a;
      [a, b] = [b, a + b];
    }
  }
  const out: number[] = [];
  for (const x of fib()) {
    if (out.length >= n) break;
    out.push(x);
  }
  return out;
}, 10);
c('generator return and throw', () => {
  function* g() {
    try {
      yield 1;
      yield 2;
    } finally {
      yield 'cleanup';
    }
  }
  const it = g();
  return [it.next(), it.return(9), it.next(), it.next()];
});
c('yield delegation', () => {
  function* inner() {
    yield 'a';
    return 'inner done';
  }
  function* outer() {
    const r = yield* inner();
    yield r;
  }
  return [...outer()];
});
c('async function', async (_ctx, xs: number[]) => {
  const double = async (x: number) => x * 2;
  const out = [];
  for (const x of xs) out.push(await double(x));
  return out;
}, [1, 2, 3]);
c('Promise.all and allSettled', async () => {
  const ok = (v: number) => Promise.resolve(v);
  const bad = (m: string) => Promise.reject(new Error(m));
  const all = await Promise.all([ok(1), ok(2)]);
  const settled = await Promise.allSettled([ok(3), bad('no')]);
  return [all, settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message))];
});
c('Promise.race and any', async () => {
  const later = (v: string) => new Promise<string>((resolve) => queueMicrotask(() => resolve(v)));
  return [await Promise.race([later('slow'), Promise.resolve('fast')]), await Promise.any([Promise.reject(new Error('x')), later('any')])];
});
c('async generator', async (_ctx, n: number) => {
  async function* countdown(from: number) {
    for (let i = from; i > 0; i--) {
      await null;
      yield i;
    }
  }
  const out: number[] = [];
  for await (const x of countdown(n)) out.push(x);
  return out;
}, 5);
c('for await over promises', async () => {
  const out: number[] = [];
  for await (const x of [Promise.resolve(1), 2, Promise.resolve(3)]) out.push(x);
  return out;
});
c('async iterator protocol by hand', async () => {
  const source = {
    i: 0,
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      return this.i < 3 ? { value: this.i++, done: false } : { value: undefined, done: true };
    },
  };
  const got: unknown[] = [];
  for await (const x of source) got.push(x);
  return got;
});
c('async error handling', async () => {
  const fail = async () => {
    throw new RangeError('too big');
  };
  try {
    await fail();
    return 'no';
  } catch (e) {
    return [(e as Error).name, (e as Error).message];
  } finally {
    // nothing
  }
});
c('microtask ordering', async () => {
  const log: string[] = [];
  queueMicrotask(() => log.push('micro'));
  await Promise.resolve().then(() => log.push('then'));
  log.push('after await');
  await null;
  return log;
});
c('async generator pipeline', async () => {
  async function* nums() {
    yield* [1, 2, 3, 4, 5, 6];
  }
  async function* evens(src: AsyncIterable<number>) {
    for await (const n of src) if (n % 2 === 0) yield n;
  }
  async function* squared(src: AsyncIterable<number>) {
    for await (const n of src) yield n * n;
  }
  const out: number[] = [];
  for await (const x of squared(evens(nums()))) out.push(x);
  return out;
});

// ---- destructuring and spread ----
c('object rest', (_ctx, o: Record<string, unknown>) => {
  const { password, ...safe } = o;
  return [safe, typeof password];
}, { user: 'a', password: 'p', role: 'x' });
c('array destructuring with defaults', (_ctx, xs: number[]) => {
  const [a = 10, , b = 20, ...rest] = xs;
  return { a, b, rest };
}, [1, 2, undefined as unknown as number, 4, 5]);
c('nested destructuring', (_ctx, o: { a: { b: [number, { c: string }] } }) => {
  const {
    a: {
      b: [n, { c: renamed = 'def' }],
    },
  } = o;
  return [n, renamed];
}, { a: { b: [7, { c: 'seven' }] } });
c('parameter destructuring', (_ctx, { x, y = 2, ...more }: { x: number; y?: number; [k: string]: number | undefined }) => [x, y, more], { x: 1, z: 3 });
c('swap', (_ctx, a: number, b: number) => {
  [a, b] = [b, a];
  return [a, b];
}, 1, 2);
c('object spread merge', (_ctx, a: object, b: object) => ({ ...a, ...b, merged: true }), { x: 1, y: 1 }, { y: 2 });
c('array spread', (_ctx, a: number[], b: number[]) => [...a, 0, ...b], [1, 2], [3]);
c('spread arguments', (_ctx, xs: number[]) => Math.max(...xs) - Math.min(...xs), [5, 1, 9, 3]);
c('rest parameters', (_ctx, ...xs: number[]) => xs.reduce((a, b) => a + b, 0), 1, 2, 3, 4);
c('computed keys and shorthand', (_ctx, k: string, v: number) => {
  const prefix = 'p_';
  return { [prefix + k]: v, k, v };
}, 'key', 5);
c('destructure in loop', (_ctx, pairs: { id: number; tags: string[] }[]) => {
  const out: string[] = [];
  for (const { id, tags: [first = 'none'] } of pairs) out.push(`${id}:${first}`);
  return out;
}, [{ id: 1, tags: ['a', 'b'] }, { id: 2, tags: [] }]);
c('object rest with symbols and numbers', () => {
  const s = Symbol('s');
  const o = { 1: 'one', a: 'A', [s]: 'sym' };
  const { a, ...rest } = o;
  return [a, Object.keys(rest), Object.getOwnPropertySymbols(rest).length];
});

// ---- optional chaining, nullish, logical assignment ----
c('optional chaining', (_ctx, o: any) => [o?.a?.b, o?.x?.y, o.f?.(), o.arr?.[1]], { a: { b: 1 }, arr: [1, 2] });
c('nullish coalescing', (_ctx, vals: unknown[]) => vals.map((v) => v ?? 'default'), [0, '', null, false, undefined as unknown]);
c('logical assignment', () => {
  const o: { a?: number; b: number; c: number | null } = { b: 0, c: null };
  o.a ||= 1;
  o.b &&= 5;
  o.c ??= 7;
  return o;
});
c('exponent and numeric separators', () => [2 ** 10, 1_000_000 + 1, (-2) ** 3, 0b1010, 0o17, 0xff]);

// ---- BigInt ----
c('BigInt factorial', (_ctx, n: number) => {
  let r = 1n;
  for (let i = 2n; i <= BigInt(n); i++) r *= i;
  return r;
}, 30);
c('BigInt argument and result', (_ctx, a: bigint, b: bigint) => [a + b, a * b, a / b, a % b, -a, a ** 3n], 123456789012345678901234567890n, 987654321n);
c('BigInt mixed formatting', (_ctx, n: bigint) => [n.toString(16), n.toString(2).length, BigInt.asUintN(64, -1n), BigInt.asIntN(8, 255n)], 2n ** 100n);
c('BigInt comparisons and sort', (_ctx, xs: bigint[]) => [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), [3n, -10n, 2n ** 70n, 0n]);
c('BigInt gcd', (_ctx, a: bigint, b: bigint) => {
  while (b) [a, b] = [b, a % b];
  return a;
}, 2n ** 64n * 6n, 2n ** 60n * 9n);
c('BigInt modular pow', (_ctx, base: bigint, exp: bigint, mod: bigint) => {
  let result = 1n;
  base %= mod;
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % mod;
    exp >>= 1n;
    base = (base * base) % mod;
  }
  return result;
}, 4n, 13n, 497n);
c('BigInt in objects and maps', (_ctx, o: { big: bigint }) => new Map([['doubled', o.big * 2n], ['negated', -o.big]]), { big: 2n ** 80n });
c('BigInt parse', (_ctx, s: string) => [BigInt(s), BigInt('0x' + 'ff'), Number(BigInt(s) % 1000n)], '340282366920938463463374607431768211456');

// ---- typed arrays ----
c('Uint8Array sum', (_ctx, bytes: Uint8Array) => bytes.reduce((a, b) => a + b, 0), new Uint8Array([1, 2, 3, 250]));
c('typed array views', () => {
  const buf = new ArrayBuffer(8);
  const view = new DataView(buf);
  view.setUint32(0, 0xdeadbeef);
  view.setFloat32(4, 1.5, true);
  return [Array.from(new Uint8Array(buf)), view.getUint16(0), view.getFloat32(4, true)];
});
c('Int32Array result', (_ctx, n: number) => Int32Array.from({ length: n }, (_, i) => (i % 2 ? -i : i) * 1000), 6);
c('Float64Array math', (_ctx, xs: number[]) => {
  const a = Float64Array.from(xs);
  const mean = a.reduce((s, x) => s + x, 0) / a.length;
  return new Float64Array(a.map((x) => x - mean));
}, [1, 2, 3, 4]);
c('Uint8ClampedArray', () => Uint8ClampedArray.from([-5, 0, 128, 300, 255.6]));
c('BigInt64Array', () => BigInt64Array.from([1n, -1n, 2n ** 62n]));
c('typed array subarray and set', () => {
  const a = new Uint16Array(10).fill(7);
  a.set([1, 2, 3], 4);
  return [Array.from(a.subarray(3, 8)), a.byteLength, a.BYTES_PER_ELEMENT];
});
c('hex encode bytes', (_ctx, bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(''), new Uint8Array([0, 15, 16, 255]));
c('bytes argument round trip', (_ctx, bytes: Uint8Array) => bytes.slice().reverse(), new Uint8Array([1, 2, 3]));
c('ArrayBuffer result', (_ctx, n: number) => new Uint8Array(n).fill(9).buffer, 4);
c('TextEncoder and TextDecoder', (_ctx, s: string) => {
  const bytes = new TextEncoder().encode(s);
  return [bytes.length, new TextDecoder().decode(bytes), new TextDecoder('utf-16le').decode(new Uint8Array([104, 0, 105, 0]))];
}, 'naïve ☕');

// ---- Date math ----
c('date difference in days', (_ctx, a: string, b: string) => Math.round((Date.parse(b) - Date.parse(a)) / 86_400_000), '2024-01-01', '2024-03-01');
c('add months UTC', (_ctx, iso: string, months: number) => {
  const d = new Date(iso);
  d.setUTCMonth(d.getUTCMonth() + months);
  return d.toISOString();
}, '2024-01-31T12:00:00.000Z', 1);
c('date argument and result', (_ctx, d: Date) => new Date(d.getTime() + 3_600_000), new Date(Date.UTC(2024, 5, 1, 10)));
c('day of week', (_ctx, dates: string[]) => dates.map((s) => ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][new Date(s).getUTCDay()]), ['2024-01-01', '2000-02-29', '1970-01-01']);
c('ISO week number', (_ctx, iso: string) => {
  const d = new Date(iso);
  const day = (d.getUTCDay() + 6) % 7;
  d.setUTCDate(d.getUTCDate() - day + 3);
  const firstThursday = new Date(Date.UTC(d.getUTCFullYear(), 0, 4));
  return 1 + Math.round(((d.getTime() - firstThursday.getTime()) / 86_400_000 - 3 + ((firstThursday.getUTCDay() + 6) % 7)) / 7);
}, '2024-12-30');
c('leap years', (_ctx, years: number[]) => years.filter((y) => new Date(Date.UTC(y, 1, 29)).getUTCMonth() === 1), [1900, 2000, 2023, 2024]);
c('date toJSON and parse', () => {
  const d = new Date(Date.UTC(1999, 11, 31, 23, 59, 59, 999));
  return [d.toJSON(), Date.parse(d.toJSON()), d.valueOf()];
});
c('invalid date', () => {
  const d = new Date('not a date');
  return [Number.isNaN(d.getTime()), String(d)];
});
c('business days', (_ctx, from: string, days: number) => {
  const d = new Date(from);
  let left = days;
  while (left > 0) {
    d.setUTCDate(d.getUTCDate() + 1);
    if (d.getUTCDay() !== 0 && d.getUTCDay() !== 6) left--;
  }
  return d.toISOString().slice(0, 10);
}, '2024-05-03', 7);

// ---- Intl formatting ----
c('toLocaleString de-DE', () => [(1234.5).toLocaleString('de-DE'), (1234.5).toLocaleString('en-US'), (0.256).toLocaleString('fr-FR', { style: 'percent' })]);
c('currency', (_ctx, amount: number) => ['EUR', 'JPY', 'USD'].map((currency) => new Intl.NumberFormat('en-GB', { style: 'currency', currency }).format(amount)), 1234.567);
c('compact and units', () => [
  new Intl.NumberFormat('en', { notation: 'compact' }).format(1_234_567),
  new Intl.NumberFormat('en', { style: 'unit', unit: 'kilometer-per-hour' }).format(88),
  new Intl.NumberFormat('de', { maximumFractionDigits: 1 }).format(3.14159),
]);
c('date formatting with time zone', (_ctx, iso: string) => [
  new Intl.DateTimeFormat('en-US', { dateStyle: 'full', timeStyle: 'short', timeZone: 'America/New_York' }).format(new Date(iso)),
  new Intl.DateTimeFormat('ja-JP', { year: 'numeric', month: 'long', day: 'numeric', timeZone: 'Asia/Tokyo' }).format(new Date(iso)),
  new Date(iso).toLocaleDateString('de-DE', { timeZone: 'UTC' }),
], '2024-07-04T16:30:00Z');
c('formatToParts', () => new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC', hour: '2-digit', minute: '2-digit' }).formatToParts(new Date(Date.UTC(2024, 0, 1, 9, 5))).map((p) => p.type + '=' + p.value));
c('relative time', () => {
  const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
  return [rtf.format(-1, 'day'), rtf.format(2, 'week'), new Intl.RelativeTimeFormat('es').format(3, 'hour')];
});
c('plural rules', (_ctx, ns: number[]) => ns.map((n) => new Intl.PluralRules('en-US', { type: 'ordinal' }).select(n)), [1, 2, 3, 4, 11, 21]);
c('list format', () => [new Intl.ListFormat('en', { type: 'conjunction' }).format(['a', 'b', 'c']), new Intl.ListFormat('de', { type: 'disjunction' }).format(['x', 'y'])]);
c('collator sorting', (_ctx, xs: string[]) => [...xs].sort(new Intl.Collator('sv').compare), ['ö', 'a', 'z', 'å', 'ä']);
c('display names', () => [new Intl.DisplayNames(['en'], { type: 'region' }).of('DE'), new Intl.DisplayNames(['fr'], { type: 'language' }).of('en-US')]);
c('segmenter words', (_ctx, s: string) => [...new Intl.Segmenter('en', { granularity: 'word' }).segment(s)].filter((x) => x.isWordLike).map((x) => x.segment), 'Hello, world! How are you?');
c('date toLocaleString with options', () => new Date(Date.UTC(2024, 1, 29, 13, 0)).toLocaleString('en-US', { timeZone: 'UTC', weekday: 'short', hour: 'numeric' }));
c('locale of a Locale', () => {
  const l = new Intl.Locale('en-Latn-US', { calendar: 'gregory' });
  return [l.language, l.script, l.region, l.baseName, l.calendar];
});

// ---- sorting ----
c('sort numbers', (_ctx, xs: number[]) => [...xs].sort((a, b) => a - b), [10, 1, 5, 100, -3]);
c('stable sort by key', (_ctx, people: { name: string; age: number }[]) => [...people].sort((a, b) => a.age - b.age).map((p) => p.name), [
  { name: 'a', age: 30 },
  { name: 'b', age: 25 },
  { name: 'c', age: 30 },
  { name: 'd', age: 25 },
]);
c('multi-key sort', (_ctx, rows: [string, number][]) => [...rows].sort(([a1, b1], [a2, b2]) => a1.localeCompare(a2) || b2 - b1), [['x', 1], ['y', 2], ['x', 3], ['a', 0]]);
c('toSorted and toReversed', (_ctx, xs: number[]) => [xs.toSorted(), xs.toReversed(), xs.with(0, 99), xs], [3, 1, 2]);
c('quicksort', (_ctx, xs: number[]) => {
  const qs = (a: number[]): number[] => (a.length < 2 ? a : [...qs(a.slice(1).filter((x) => x < a[0]!)), a[0]!, ...qs(a.slice(1).filter((x) => x >= a[0]!))]);
  return qs(xs);
}, [5, 3, 8, 1, 9, 2, 7]);
c('merge sort', (_ctx, xs: number[]) => {
  const ms = (a: number[]): number[] => {
    if (a.length < 2) return a;
    const mid = a.length >> 1;
    const l = ms(a.slice(0, mid));
    const r = ms(a.slice(mid));
    const out: number[] = [];
    while (l.length && r.length) out.push(l[0]! <= r[0]! ? l.shift()! : r.shift()!);
    return [...out, ...l, ...r];
  };
  return ms(xs);
}, [38, 27, 43, 3, 9, 82, 10]);
c('sort strings with numbers', (_ctx, files: string[]) => [...files].sort(new Intl.Collator('en', { numeric: true }).compare), ['file10', 'file2', 'file1']);
c('top k', (_ctx, xs: number[], k: number) => [...xs].sort((a, b) => b - a).slice(0, k), [4, 9, 1, 7, 3], 3);
c('group by', (_ctx, words: string[]) => {
  const groups: Record<string, string[]> = {};
  for (const w of words) (groups[w[0]!] ??= []).push(w);
  return groups;
}, ['apple', 'avocado', 'banana', 'blueberry', 'cherry']);
c('unique sorted', (_ctx, xs: number[]) => [...new Set(xs)].sort((a, b) => a - b), [3, 1, 3, 2, 1]);

// ---- recursion ----
c('fibonacci memo', (_ctx, n: number) => {
  const memo = new Map<number, number>();
  const fib = (k: number): number => (k < 2 ? k : memo.get(k) ?? (memo.set(k, fib(k - 1) + fib(k - 2)), memo.get(k)!));
  return fib(n);
}, 60);
c('permutations', (_ctx, xs: string[]) => {
  const perms = (a: string[]): string[][] => (a.length <= 1 ? [a] : a.flatMap((x, i) => perms([...a.slice(0, i), ...a.slice(i + 1)]).map((p) => [x, ...p])));
  return perms(xs).map((p) => p.join(''));
}, ['a', 'b', 'c']);
c('tree depth', (_ctx, tree: any) => {
  const depth = (t: any): number => (t === null ? 0 : 1 + Math.max(depth(t.left), depth(t.right)));
  return depth(tree);
}, { left: { left: null, right: { left: null, right: null } }, right: null });
c('ackermann small', (_ctx, m: number, n: number) => {
  const ack = (a: number, b: number): number => (a === 0 ? b + 1 : b === 0 ? ack(a - 1, 1) : ack(a - 1, ack(a, b - 1)));
  return ack(m, n);
}, 2, 3);
c('hanoi moves', (_ctx, n: number) => {
  const moves: string[] = [];
  const hanoi = (k: number, from: string, to: string, via: string): void => {
    if (k === 0) return;
    hanoi(k - 1, from, via, to);
    moves.push(from + to);
    hanoi(k - 1, via, to, from);
  };
  hanoi(n, 'A', 'C', 'B');
  return moves;
}, 3);
c('flatten deep', (_ctx, xs: unknown[]) => {
  const flat = (a: unknown[]): unknown[] => a.reduce<unknown[]>((acc, x) => (Array.isArray(x) ? [...acc, ...flat(x)] : [...acc, x]), []);
  return [flat(xs), xs.flat(Infinity)];
}, [1, [2, [3, [4, [5]]]], 6]);
c('mutual recursion', (_ctx, n: number) => {
  function isEven(k: number): boolean {
    return k === 0 ? true : isOdd(k - 1);
  }
  function isOdd(k: number): boolean {
    return k === 0 ? false : isEven(k - 1);
  }
  return [isEven(n), isOdd(n)];
}, 17);
c('deep recursion', (_ctx, n: number) => {
  const sum = (k: number): number => (k === 0 ? 0 : k + sum(k - 1));
  return sum(n);
}, 2000);
c('json tree walk', (_ctx, doc: unknown) => {
  const count = (v: unknown): number => (Array.isArray(v) ? v.reduce((s: number, x) => s + count(x), 0) : v && typeof v === 'object' ? Object.values(v).reduce((s: number, x) => s + count(x), 0) : 1);
  return count(doc);
}, { a: [1, 2, { b: 3 }], c: { d: [4, [5, 6]] } });

// ---- closures inside the function ----
c('counter closure', () => {
  const make = () => {
    let n = 0;
    return { inc: () => ++n, get: () => n };
  };
  const a = make();
  const b = make();
  a.inc();
  a.inc();
  b.inc();
  return [a.get(), b.get()];
});
c('memoize', (_ctx, xs: number[]) => {
  let calls = 0;
  const memo = <A, R>(f: (a: A) => R) => {
    const cache = new Map<A, R>();
    return (a: A) => {
      if (!cache.has(a)) cache.set(a, f(a));
      return cache.get(a)!;
    };
  };
  const slowSquare = memo((x: number) => {
    calls++;
    return x * x;
  });
  return [xs.map(slowSquare), calls];
}, [2, 3, 2, 3, 4]);
c('compose and curry', () => {
  const compose = (...fs: ((x: number) => number)[]) => (x: number) => fs.reduceRight((v, f) => f(v), x);
  const add = (a: number) => (b: number) => a + b;
  const mul = (a: number) => (b: number) => a * b;
  return compose(add(1), mul(10))(4);
});
c('once', () => {
  const once = <T>(f: () => T) => {
    let done = false;
    let value: T;
    return () => (done ? value! : ((done = true), (value = f())));
  };
  let n = 0;
  const init = once(() => ++n);
  return [init(), init(), n];
});
c('event emitter', () => {
  const emitter = () => {
    const handlers = new Map<string, ((x: unknown) => void)[]>();
    return {
      on: (e: string, h: (x: unknown) => void) => void handlers.set(e, [...(handlers.get(e) ?? []), h]),
      emit: (e: string, x: unknown) => (handlers.get(e) ?? []).forEach((h) => h(x)),
    };
  };
  const em = emitter();
  const seen: unknown[] = [];
  em.on('x', (v) => seen.push(v));
  em.on('x', (v) => seen.push(['again', v]));
  em.emit('x', 1);
  em.emit('y', 2);
  return seen;
});
c('closures in loops', () => {
  const fs: (() => number)[] = [];
  for (let i = 0; i < 3; i++) fs.push(() => i * 10);
  var gs: (() => number)[] = [];
  for (var j = 0; j < 3; j++) gs.push(() => j);
  return [fs.map((f) => f()), gs.map((g) => g())];
});
c('debounce-like state machine', (_ctx, events: string[]) => {
  const machine = () => {
    let state = 'idle';
    const transitions: Record<string, Record<string, string>> = { idle: { start: 'running' }, running: { pause: 'paused', stop: 'idle' }, paused: { resume: 'running', stop: 'idle' } };
    return (e: string) => (state = transitions[state]?.[e] ?? state);
  };
  const step = machine();
  return events.map(step);
}, ['start', 'pause', 'pause', 'resume', 'stop', 'resume']);
c('iife and module pattern', () => {
  const mod = (() => {
    const secret = 42;
    return { reveal: () => secret / 2 };
  })();
  return mod.reveal();
});

// ---- collections ----
c('Map result', (_ctx, words: string[]) => {
  const m = new Map<string, number>();
  for (const w of words) m.set(w, (m.get(w) ?? 0) + 1);
  return m;
}, ['a', 'b', 'a', 'c', 'a']);
c('Set result', (_ctx, xs: number[]) => new Set(xs.map((x) => x % 3)), [1, 2, 3, 4, 5, 6]);
c('nested Map and Set', () => new Map<string, unknown>([['evens', new Set([0, 2, 4])], ['lookup', new Map([[1, 'one'], [2, 'two']])], ['big', new Set([2n ** 65n])]]));
c('Map argument', (_ctx, m: Map<string, number>) => [...m.entries()].map(([k, v]) => `${k}=${v * 2}`), new Map([['a', 1], ['b', 2]]));
c('Set argument operations', (_ctx, a: Set<number>, b: Set<number>) => [[...a].filter((x) => b.has(x)), [...new Set([...a, ...b])]], new Set([1, 2, 3]), new Set([2, 3, 4]));
c('Map with object keys', () => {
  const k1 = { id: 1 };
  const m = new Map<object, string>([[k1, 'first'], [{ id: 2 }, 'second']]);
  return [m.get(k1), m.size, [...m.keys()].map((k) => (k as { id: number }).id)];
});
c('WeakMap private data', () => {
  const secrets = new WeakMap<object, string>();
  const o = {};
  secrets.set(o, 'hidden');
  return [secrets.get(o), secrets.has({})];
});
c('array methods', (_ctx, xs: number[]) => [xs.findLast((x) => x % 2 === 0), xs.findLastIndex((x) => x > 100), xs.at(-2), xs.includes(3), xs.flatMap((x) => [x, x * 10]).length, Array.from({ length: 3 }, (_, i) => i * i)], [1, 2, 3, 4, 5]);
c('Object.fromEntries and entries', (_ctx, o: Record<string, number>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k.toUpperCase(), v * 2])), { a: 1, b: 2 });
c('reduce to index', (_ctx, rows: { id: string; v: number }[]) => rows.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r.id]: r.v }), {}), [{ id: 'x', v: 1 }, { id: 'y', v: 2 }]);
c('matrix transpose', (_ctx, m: number[][]) => m[0]!.map((_, i) => m.map((row) => row[i])), [[1, 2, 3], [4, 5, 6]]);
c('chunk', (_ctx, xs: number[], size: number) => Array.from({ length: Math.ceil(xs.length / size) }, (_, i) => xs.slice(i * size, i * size + size)), [1, 2, 3, 4, 5, 6, 7], 3);
c('zip', (_ctx, a: string[], b: number[]) => a.map((x, i) => [x, b[i] ?? null]), ['a', 'b', 'c'], [1, 2]);
c('structuredClone', (_ctx, o: unknown) => {
  const copy = structuredClone(o) as Record<string, unknown>;
  copy.added = true;
  return [o, copy];
}, { a: [1, 2], m: new Map([['k', new Set([1])]]), d: new Date(0), n: 10n });
c('Object.freeze and isFrozen', () => {
  const o = Object.freeze({ a: 1 });
  let threw = false;
  try {
    (o as { a: number }).a = 2;
  } catch {
    threw = true;
  }
  return [o.a, Object.isFrozen(o), threw];
});
c('Proxy and Reflect', () => {
  const log: string[] = [];
  const target = { a: 1, b: 2 };
  const p = new Proxy(target, {
    get(t, k, r) {
      log.push(String(k));
      return Reflect.get(t, k, r);
    },
  });
  return [p.a + p.b, log, Reflect.ownKeys(target)];
});
c('Symbol usage inside', () => {
  const tag = Symbol('tag');
  const o: Record<symbol, string> = { [tag]: 'x' };
  return [o[tag], tag.description, typeof tag, Symbol.for('app.key') === Symbol.for('app.key')];
});
c('getter in object literal', (_ctx, first: string, last: string) => {
  const person = {
    first,
    last,
    get full() {
      return `${this.first} ${this.last}`;
    },
  };
  return person.full;
}, 'Ada', 'Lovelace');
c('labelled loops', (_ctx, grid: number[][]) => {
  let found: [number, number] | null = null;
  outer: for (let i = 0; i < grid.length; i++) {
    for (let j = 0; j < grid[i]!.length; j++) {
      if (grid[i]![j] === 0) {
        found = [i, j];
        break outer;
      }
    }
  }
  return found;
}, [[1, 2], [3, 0], [0, 5]]);
c('switch statement', (_ctx, xs: (string | number)[]) => xs.map((x) => {
  switch (typeof x) {
    case 'number':
      return x > 0 ? 'positive' : 'not positive';
    case 'string':
      return 'text';
    default:
      return 'other';
  }
}), [1, -1, 'a']);
c('enum inside', (_ctx, s: string) => {
  enum Color {
    Red = 'RED',
    Green = 'GREEN',
  }
  enum Level {
    Low,
    High,
  }
  return [Color.Red, Object.values(Color).includes(s as Color), Level.High, Level[0]];
}, 'GREEN');
c('namespaced helpers in a function', (_ctx, n: number) => {
  const util = {
    isPrime(k: number) {
      if (k < 2) return false;
      for (let i = 2; i * i <= k; i++) if (k % i === 0) return false;
      return true;
    },
  };
  return Array.from({ length: n }, (_, i) => i).filter((i) => util.isPrime(i));
}, 30);

// ---- numbers and math ----
c('rounding', (_ctx, x: number) => [Math.round(x), Math.floor(x), Math.ceil(x), Math.trunc(x), x.toFixed(2), x.toPrecision(3)], -2.5678);
c('number formatting edge cases', () => [0.1 + 0.2, (0.1 + 0.2).toFixed(10), Number.EPSILON > 0, Number.MAX_SAFE_INTEGER, 1e21.toString(), (255).toString(2)]);
c('parse numbers', (_ctx, xs: string[]) => xs.map((s) => [Number(s), parseInt(s, 10), parseFloat(s)]), ['42', '3.14abc', '0x1f', '']);
c('special values', () => [NaN, Infinity, -Infinity, Number.isNaN(NaN), Object.is(-0, 0), 1 / 0]);
c('statistics', (_ctx, xs: number[]) => {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
  const sorted = [...xs].sort((a, b) => a - b);
  const median = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  return { mean, sd: Number(sd.toFixed(6)), median };
}, [2, 4, 4, 4, 5, 5, 7, 9]);
c('trigonometry', () => [Math.sin(Math.PI / 6).toFixed(6), Math.hypot(3, 4), Math.atan2(1, 1).toFixed(6), Math.cbrt(27), Math.sign(-3), Math.log2(1024)]);
c('bit operations', (_ctx, a: number, b: number) => [a & b, a | b, a ^ b, ~a, a << 2, a >> 1, -a >>> 28], 12, 10);
c('primes sieve', (_ctx, n: number) => {
  const sieve = new Uint8Array(n + 1).fill(1);
  sieve[0] = sieve[1] = 0;
  for (let i = 2; i * i <= n; i++) if (sieve[i]) for (let j = i * i; j <= n; j += i) sieve[j] = 0;
  return sieve.reduce<number[]>((acc, v, i) => (v ? [...acc, i] : acc), []);
}, 50);
c('integer division and modulo', () => [7 % 3, -7 % 3, ((-7 % 3) + 3) % 3, Math.floor(-7 / 3), 2 ** 53 + 1]);
c('currency arithmetic in cents', (_ctx, prices: number[], taxRate: number) => {
  const cents = prices.map((p) => Math.round(p * 100));
  const subtotal = cents.reduce((a, b) => a + b, 0);
  const tax = Math.round(subtotal * taxRate);
  return { subtotal: subtotal / 100, tax: tax / 100, total: (subtotal + tax) / 100 };
}, [19.99, 5.01, 0.1], 0.2);

// ---- the web platform a node has ----
c('URL parsing', (_ctx, href: string) => {
  const u = new URL(href);
  return [u.protocol, u.hostname, u.port, u.pathname, u.search, u.hash, u.searchParams.get('q'), u.origin];
}, 'https://user:pw@example.com:8443/a/b?q=keynode&x=1#frag');
c('URL building', () => {
  const u = new URL('/search', 'https://example.org');
  u.searchParams.set('q', 'a b&c');
  u.searchParams.append('page', '2');
  u.hash = 'top';
  return [u.href, String(u), JSON.stringify({ u })];
});
c('URLSearchParams', (_ctx, qs: string) => {
  const p = new URLSearchParams(qs);
  p.sort();
  const seen: string[] = [];
  p.forEach((v, k) => seen.push(`${k}:${v}`));
  return [p.toString(), p.getAll('a'), p.has('b'), [...p.keys()], seen, p.size];
}, 'b=2&a=1&a=3&c=%20x');
c('URL errors', (_ctx, bad: string) => {
  try {
    new URL(bad);
    return 'parsed';
  } catch (e) {
    return [(e as Error).name, e instanceof TypeError];
  }
}, 'not a url');
c('URL.canParse', () => [URL.canParse('https://x.y'), URL.canParse('nope'), URL.canParse('/p', 'http://h')]);
c('atob and btoa', (_ctx, s: string) => [btoa(s), atob(btoa(s)), atob('aGk=')], 'hello, world');
c('base64 of bytes', (_ctx, bytes: Uint8Array) => btoa(String.fromCharCode(...bytes)), new Uint8Array([0, 255, 128, 1]));
c('crypto digest', async (_ctx, s: string) => {
  const d = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, '0')).join('');
}, 'abc');
c('crypto digest variants', async () => {
  const data = new TextEncoder().encode('keynode');
  const sizes: number[] = [];
  for (const alg of ['SHA-1', 'SHA-384', { name: 'SHA-512' }]) sizes.push((await crypto.subtle.digest(alg, data)).byteLength);
  return sizes;
});
c('random values have the right shape', () => {
  const a = crypto.getRandomValues(new Uint32Array(8));
  const id = crypto.randomUUID();
  return [a.length, a instanceof Uint32Array, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id), typeof Math.random()];
});
c('console does not change the result', (_ctx, x: number) => {
  console.log('computing', { x });
  console.warn('careful');
  console.error(new Error('shown, not thrown'));
  console.table([{ a: 1 }]);
  return x * 3;
}, 7);
c('eval as indirect eval', () => [eval('1 + 1'), eval('"<!-- in eval -->"'), typeof eval('(function () { return 1 })'), (0, eval)('[1, 2].length')]);
c('queueMicrotask', async () => {
  const order: number[] = [];
  await new Promise<void>((resolve) => {
    queueMicrotask(() => order.push(1));
    queueMicrotask(() => {
      order.push(2);
      resolve();
    });
  });
  return order;
});
c('globalThis basics', () => [typeof globalThis, typeof globalThis.JSON, typeof globalThis.Intl, typeof globalThis.Math.max]);

// ---- errors thrown (compared by name and message) ----
c('throws a TypeError', () => {
  const o: any = null;
  return o.property;
});
c('throws a custom error', (_ctx, n: number) => {
  if (n < 0) throw new RangeError(`negative: ${n}`);
  return n;
}, -5);
c('throws a string', () => {
  throw 'plain string';
});
c('throws from an async function', async () => {
  await null;
  throw new SyntaxError('late');
});
c('error cause', () => {
  try {
    try {
      throw new Error('inner');
    } catch (e) {
      throw new Error('outer', { cause: e });
    }
  } catch (e) {
    return [(e as Error).message, ((e as Error).cause as Error).message];
  }
});
c('AggregateError', async () => {
  try {
    await Promise.any([Promise.reject(new Error('a')), Promise.reject(new Error('b'))]);
    return 'no';
  } catch (e) {
    return [(e as AggregateError).name, (e as AggregateError).errors.map((x: Error) => x.message)];
  }
});
c('stack overflow is a RangeError', () => {
  const f = (): number => f() + 1;
  try {
    return f();
  } catch (e) {
    return (e as Error).name;
  }
});

// ---- functions in several shapes ----
c('function expression', function (_ctx: Ctx, a: number, b: number) {
  return a * b + arguments.length;
}, 6, 7);
c('named function expression recursion', function fact(_ctx: Ctx, n: number): number {
  return n <= 1 ? 1 : n * fact(_ctx, n - 1);
}, 10);
c('async function expression', async function (_ctx: Ctx, s: string) {
  return s.length;
}, 'four');
c('arrow returning object literal', (_ctx, k: string) => ({ [k]: k.length }), 'width');
c('default parameters', (_ctx, a: number, b = a * 2, c = a + b) => [a, b, c], 5);
c('typeof guards for optional globals', () => [typeof window === 'undefined', typeof document, typeof navigator === 'object' ? 'browser' : 'server']);
c('function name and length', () => {
  function named(a: number, b: number) {
    return a + b;
  }
  const arrow = (x: number) => x;
  return [named.name, named.length, arrow.name, arrow.length];
});
c('call apply bind', () => {
  function greet(this: { name: string }, greeting: string, punct: string) {
    return `${greeting}, ${this.name}${punct}`;
  }
  const o = { name: 'Ada' };
  return [greet.call(o, 'Hi', '!'), greet.apply(o, ['Hello', '.']), greet.bind(o, 'Hey')('?')];
});
c('new.target and instanceof', () => {
  function Thing(this: any) {
    return { called: new.target === undefined ? 'as function' : 'with new' };
  }
  return [(Thing as any)().called, new (Thing as any)().called];
});
c('getter on arguments-free arrow', (_ctx, ...args: number[]) => args.length, 1, 2, 3);
c('generators collected before returning', (_ctx, n: number) => {
  function* range(k: number) {
    for (let i = 0; i < k; i++) yield i;
  }
  return [...range(n)];
}, 4);

export default cases;
export { cases };
