/**
 * Values that travel (arguments, results, stored values): what structuredClone carries and holds no
 * authority round-trips exactly, BigInt, Map, Set, typed arrays and their nestings included; what cannot
 * travel (functions, symbols, class instances, cycles) is refused with the path to the bad value; hostile
 * bytes for the new extensions are malformed messages, not crashes.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { isKeynodeError, Lifetime, type KeynodeError, type NodeHandle } from 'keynode';
import { BIGINT_EXT, BINARY_EXT, makeCodec, MAP_EXT, SET_EXT } from '../../dist/protocol/codec.js';
import { startContainer, type TestContainer } from '../helpers/containers.js';

const codec = makeCodec((url) => ({ url }));

function refusal(value: unknown, label = 'result'): string {
  try {
    codec.encode(value, label);
  } catch (e) {
    expect(isKeynodeError(e) && e.code).toBe('ERR_RESULT');
    return (e as Error).message;
  }
  throw new Error('encoded');
}

class Customer {
  name = 'c';
}

const EXACT: [string, unknown][] = [
  ['BigInt 0', 0n],
  ['BigInt -1', -1n],
  ['BigInt 2^64', 2n ** 64n],
  ['BigInt -(2^200)+7', -(2n ** 200n) + 7n],
  ['Map', new Map<unknown, unknown>([['a', 1], [2, 'b'], [null, [true]]])],
  ['Set', new Set([1, 'a', null, 2n])],
  ['nested', new Map<unknown, unknown>([['set', new Set([new Map([[1n, new Set([[1, 2]])]])])], [{ key: 'object' }, new Map()]])],
  ['Map in object in array', [{ m: new Map([['x', { y: new Set(['z']) }]]) }]],
  ['typed arrays', [new Int8Array([-1]), new Uint8ClampedArray([255]), new Int16Array([-300]), new Uint16Array([65535]), new Int32Array([-1]), new Uint32Array([4e9]), new Float32Array([1.5]), new Float64Array([Math.PI, NaN, -0]), new BigInt64Array([-(2n ** 63n)]), new BigUint64Array([2n ** 64n - 1n])]],
  ['ArrayBuffer and DataView', [new Uint8Array([1, 2, 3]).buffer, new DataView(new Uint8Array([4, 5]).buffer)]],
  ['a view of part of a buffer', new Int16Array(new Int16Array([1, 2, 3, 4]).buffer, 2, 2)],
  ['Date', new Date(Date.UTC(2024, 1, 29))],
];

describe('the codec', () => {
  it.each(EXACT)('round-trips %s exactly', (_name, value) => {
    expect(codec.decode(codec.encode(value))).toStrictEqual(value);
  });

  it('names the path to what cannot be sent', () => {
    const owner = new Customer();
    expect(refusal({ items: [1, 2, 3, { owner }] })).toBe('result.items[3].owner is a class instance (Customer), which cannot be sent: send plain objects, arrays, strings, numbers, booleans, null, BigInt, Date, Map, Set, Uint8Array and other typed arrays, or node references');
    expect(refusal({ f: () => 1 })).toBe('result.f is a function: functions cannot be sent; ship code as the function of an at() call instead');
    expect(refusal([Symbol('s')], 'args')).toMatch(/^args\[0\] is a symbol/);
    expect(refusal({ 'odd key': { p: Promise.resolve() } })).toMatch(/^result\["odd key"\]\.p is a Promise \(did you forget an await\?\)/);
    const cyclic: Record<string, unknown> = { a: { b: {} } };
    (cyclic.a as { b: Record<string, unknown> }).b.back = cyclic;
    expect(refusal(cyclic)).toMatch(/^result\.a\.b\.back is result again \(a cycle\)/);
    const m = new Map<string, unknown>();
    m.set('me', { m });
    expect(refusal({ m })).toMatch(/^result\.m\.get\("me"\)\.m is result\.m again \(a cycle\)/);
    expect(refusal(new Map([['k', new Set([new Customer()])]]))).toMatch(/^result\.get\("k"\) \(item 0\) is a class instance \(Customer\)/);
    expect(refusal(new (class Registry extends Map {})())).toMatch(/^result is a Map subclass \(Registry\)/);
    let deep: unknown = 1;
    for (let i = 0; i < 150; i++) deep = new Map([['d', deep]]);
    expect(refusal(deep)).toMatch(/nests more than 100 levels deep/);
  });

  it.each([
    ['a BigInt with a bad sign byte', BIGINT_EXT, [7, 1]],
    ['a Map with an odd number of items', MAP_EXT, [0x91, 1]],
    ['a Map that is not an array', MAP_EXT, [0x01]],
    ['a Set that is not an array', SET_EXT, [0xc0]],
    ['a binary of an unknown kind', BINARY_EXT, [99, 0]],
    ['a Float64Array of 3 bytes', BINARY_EXT, [8, 1, 2, 3]],
  ])('refuses %s as a malformed message', (_name, type, payload) => {
    const bytes = Uint8Array.from([0xc7, payload.length, type, ...payload]);
    expect(() => codec.decode(bytes)).toThrow(expect.objectContaining({ code: 'ERR_BAD_MESSAGE' }));
  });

  it('refuses Maps nested past the limit in hostile bytes, without exhausting the stack', () => {
    // 2,000 nested Map extensions, each holding the next: built from the inside out.
    let inner = Buffer.from([0x90]);
    for (let i = 0; i < 2000; i++) {
      const n = inner.length + 1;
      const head = n < 256 ? [0xc7, n, MAP_EXT] : n < 65536 ? [0xc8, n >> 8, n & 255, MAP_EXT] : [0xc9, 0, n >> 16, (n >> 8) & 255, n & 255, MAP_EXT];
      inner = Buffer.concat([Buffer.from([...head, 0x91]), inner]);
    }
    expect(() => codec.decode(new Uint8Array(inner))).toThrow(expect.objectContaining({ code: 'ERR_BAD_MESSAGE', message: expect.stringMatching(/Maps nest more than 100 deep/) }));
  });
});

describe('through a node', () => {
  let tc: TestContainer;
  let node: NodeHandle;
  beforeAll(async () => {
    tc = await startContainer();
    node = await tc.client.spawn({ lifetime: Lifetime.root() });
  });

  it('arguments and results round-trip exactly, and so do stored values', async () => {
    const values = EXACT.map(([, v]) => v);
    expect(await tc.client.at(node, (_ctx, ...vs: unknown[]) => vs, ...values)).toStrictEqual(values);
    await tc.client.at(node, (ctx, vs: unknown[]) => ctx.ref('values').set(vs), values);
    expect(await tc.client.at(node, (ctx) => ctx.ref('values').get())).toStrictEqual(values);
    expect(await tc.client.at(node, (_ctx, a: bigint, m: Map<string, bigint>) => [a * m.get('k')!, typeof a], 2n ** 70n, new Map([['k', 3n]]))).toEqual([3n * 2n ** 70n, 'bigint']);
  });

  it('a result that cannot travel is refused with its path, from the node', async () => {
    const e = (await tc.client
      .at(node, () => {
        class Customer {
          constructor(readonly name: string) {}
        }
        return { items: [1, 2, 3, { owner: new Customer('x') }] };
      })
      .catch((err: unknown) => err)) as KeynodeError;
    expect(e.code).toBe('ERR_RESULT');
    expect(e.message).toMatch(/^result\.items\[3\]\.owner is a class instance \(Customer\)/);
    const stored = (await tc.client.at(node, (ctx) => ctx.ref('x').set({ f: () => 1 })).catch((err: unknown) => err)) as KeynodeError;
    expect(stored.code).toBe('ERR_RESULT');
    expect(stored.message).toMatch(/^value\.f is a function/);
  });

  it('an argument that cannot travel is refused by the client with its path', async () => {
    const e = (await tc.client.at(node, (_ctx, _a: unknown) => 1, { nested: [Symbol('s')] }).catch((err: unknown) => err)) as KeynodeError;
    expect(e.code).toBe('ERR_RESULT');
    expect(e.message).toMatch(/^args\[0\]\.nested\[0\] is a symbol/);
  });
});
