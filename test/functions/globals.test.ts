/**
 * The globals a node has: exactly the documented list, each usable as on the web platform, each frozen so
 * that nothing one eval or node does to them is seen by the next (another node of the same tenant may be
 * served by the same process), and none leaking Node's own classes (whose prototypes lockdown never froze)
 * through a value, an iterator or an error. console writes to the node's log; eval evaluates in the node.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Lifetime, type NodeHandle } from 'keynode';
import { NODE_GLOBALS } from '../../dist/protocol/function-source.js';
import { startContainer, type TestContainer } from '../helpers/containers.js';

let tc: TestContainer;
let node: NodeHandle;

beforeAll(async () => {
  tc = await startContainer();
  node = await tc.client.spawn({ lifetime: Lifetime.root(), sandbox: { log: true } });
});

describe('globals', () => {
  it("are the client's list, which its check allows", async () => {
    const names = await tc.client.at(node, () => Object.getOwnPropertyNames(globalThis).sort());
    expect(names).toEqual([...NODE_GLOBALS].sort());
  });

  it('cannot be changed, nor can what they hand out, for any later eval or node', async () => {
    const attempts = await tc.client.at(node, () => {
      const results: Record<string, string> = {};
      const tryIt = (name: string, f: () => void) => {
        try {
          f();
          results[name] = 'changed';
        } catch {
          results[name] = 'refused';
        }
      };
      const poison = (o: object, key: PropertyKey = 'evil') => () => {
        (o as Record<PropertyKey, unknown>)[key] = () => 'poisoned';
      };
      const usp = new URLSearchParams('a=1');
      const segments = new Intl.Segmenter('en').segment('ab');
      tryIt('URL.prototype', poison(URL.prototype, 'toString'));
      tryIt('URL static', poison(URL, 'canParse'));
      tryIt('URLSearchParams.prototype', poison(URLSearchParams.prototype, 'get'));
      tryIt('URLSearchParams iterator', poison(Object.getPrototypeOf(usp.keys()), 'next'));
      tryIt('TextEncoder.prototype', poison(TextEncoder.prototype, 'encode'));
      tryIt('TextDecoder.prototype', poison(TextDecoder.prototype, 'decode'));
      tryIt('console', poison(console, 'log'));
      tryIt('crypto', poison(crypto, 'randomUUID'));
      tryIt('crypto.subtle', poison(crypto.subtle, 'digest'));
      tryIt('Intl', poison(Intl, 'NumberFormat'));
      tryIt('Intl.NumberFormat.prototype', poison(Intl.NumberFormat.prototype, 'format'));
      tryIt('Intl.Collator.prototype', poison(Intl.Collator.prototype, 'resolvedOptions'));
      tryIt('Intl.Segmenter.prototype', poison(Intl.Segmenter.prototype, 'segment'));
      tryIt('Segments', poison(Object.getPrototypeOf(segments), 'containing'));
      tryIt('Segments iterator', poison(Object.getPrototypeOf(segments[Symbol.iterator]()), 'next'));
      tryIt('Number.prototype.toLocaleString', poison(Number.prototype, 'toLocaleString'));
      tryIt('structuredClone', poison(structuredClone, 'x'));
      tryIt('atob', poison(atob, 'x'));
      tryIt('queueMicrotask', poison(queueMicrotask, 'x'));
      tryIt('eval', poison(eval, 'x'));
      tryIt('Float64Array.prototype', poison(Float64Array.prototype, 'fill'));
      tryIt('Date', poison(Date, 'now'));
      tryIt('Math', poison(Math, 'random'));
      tryIt('globalThis', poison(globalThis, 'fetch'));
      return results;
    });
    for (const [name, outcome] of Object.entries(attempts)) expect(outcome, name).toBe('refused');
    const other = await tc.client.spawn({ lifetime: Lifetime.root() });
    for (const n of [node, other]) {
      expect(await tc.client.at(n, () => [String(new URL('http://a.b/c')), new URLSearchParams('a=1').get('a'), new TextEncoder().encode('é').length, typeof (globalThis as Record<string, unknown>).fetch, (1234.5).toLocaleString('de-DE')])).toEqual(['http://a.b/c', '1', 2, 'undefined', '1.234,5']);
    }
  });

  it("hand out intrinsic values and errors, never Node's", async () => {
    const report = await tc.client.at(node, () => {
      const protoIs = (v: object, p: object) => Object.getPrototypeOf(v) === p;
      const arrayIterator = Object.getPrototypeOf([][Symbol.iterator]());
      const caught = (f: () => unknown): Error => {
        try {
          f();
        } catch (e) {
          return e as Error;
        }
        throw new Error('did not throw');
      };
      const u = new URL('https://x.y/?a=1');
      return {
        searchParamsIterator: protoIs(u.searchParams.entries(), arrayIterator),
        getAll: Array.isArray(new URLSearchParams('a=1&a=2').getAll('a')),
        encoded: protoIs(new TextEncoder().encode('x'), Uint8Array.prototype),
        badURL: [caught(() => new URL('nope')).name, protoIs(caught(() => new URL('nope')), TypeError.prototype)],
        badLabel: [caught(() => new TextDecoder('no-such-encoding')).name, protoIs(caught(() => new TextDecoder('no-such-encoding')), RangeError.prototype)],
        badUTF8: protoIs(caught(() => new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array([0xff]))), TypeError.prototype),
        badBase64: [caught(() => atob('*')).name, protoIs(caught(() => atob('*')), Error.prototype)],
        notCloneable: [caught(() => structuredClone(() => 1)).name, protoIs(caught(() => structuredClone(() => 1)), Error.prototype)],
        quota: caught(() => crypto.getRandomValues(new Uint8Array(70_000))).name,
        floats: caught(() => crypto.getRandomValues(new Float64Array(1) as unknown as Uint8Array)).name,
        segments: protoIs([...new Intl.Segmenter('en').segment('ab')][0]!, Object.prototype),
      };
    });
    expect(report).toEqual({
      searchParamsIterator: true,
      getAll: true,
      encoded: true,
      badURL: ['TypeError', true],
      badLabel: ['RangeError', true],
      badUTF8: true,
      badBase64: ['InvalidCharacterError', true],
      notCloneable: ['DataCloneError', true],
      quota: 'QuotaExceededError',
      floats: 'TypeMismatchError',
      segments: true,
    });
  });

  it('digest rejects (as a promise) an unknown algorithm', async () => {
    expect(await tc.client.at(node, () => crypto.subtle.digest('MD5', new Uint8Array(1)).then(() => 'resolved', (e: Error) => e.name))).toBe('NotSupportedError');
  });
});

describe('console', () => {
  it("writes the node's log when sandbox.log, formatted like Node's, and counts per eval", async () => {
    const logged = await tc.client.spawn({ lifetime: Lifetime.root(), sandbox: { log: true } });
    await tc.client.at(logged, () => {
      console.log('hello %s, %d items', 'world', 3, { a: 1 });
      console.error(new TypeError('bad'));
      console.count();
      console.count();
      console.log(new Map([[1, 2n]]));
    });
    await tc.client.at(logged, () => console.count());
    const lines = (await tc.client.logs(logged)).map((l) => l.line);
    expect(lines).toEqual(['hello world, 3 items {"a":1}', 'TypeError: bad', 'default: 1', 'default: 2', '{"Map":[[1,"2n"]]}', 'default: 1']);
  });

  it('is dropped without sandbox.log, and after the eval returned', async () => {
    const quiet = await tc.client.spawn({ lifetime: Lifetime.root(), sandbox: { log: false } });
    expect(await tc.client.at(quiet, () => (console.log('dropped'), 'ok'))).toBe('ok');
    expect(await tc.client.logs(quiet)).toEqual([]);
    const late = await tc.client.spawn({ lifetime: Lifetime.root(), sandbox: { log: true } });
    await tc.client.at(late, () => {
      void Promise.resolve().then(() => Promise.resolve()).then(() => console.log('after the result'));
      console.log('during');
      return 'returned';
    });
    await tc.client.at(late, () => 'next eval');
    expect((await tc.client.logs(late)).map((l) => l.line)).toEqual(['during']);
  });
});

describe('eval', () => {
  it("evaluates in the node's global scope, with the same rewriting as shipped functions", async () => {
    expect(
      await tc.client.at(node, () => {
        const local = 5;
        return [eval('1 + 1'), eval('typeof local'), eval('[typeof Math, typeof URL]'), eval('"<!--" + `-->` + "import(x)"'), eval('(x) => x * 2')(local), eval(42 as unknown as string)];
      }),
    ).toEqual([2, 'undefined', ['object', 'function'], '<!---->import(x)', 10, 42]);
  });

  it('refuses import() in eval, as a SyntaxError the function can catch', async () => {
    expect(
      await tc.client.at(node, () => {
        try {
          return eval('import("node:fs")');
        } catch (e) {
          return [(e as Error).name, /import\(\)/.test((e as Error).message)];
        }
      }),
    ).toEqual(['SyntaxError', true]);
  });

  it('runs code a node stored, as the README says', async () => {
    await tc.client.at(node, (ctx) => ctx.ref('code').set('(a, b) => a * b // <!-- stored -->'));
    expect(await tc.client.at(node, async (ctx) => eval((await ctx.ref<string>('code').get())!)(6, 7))).toBe(42);
  });
});
