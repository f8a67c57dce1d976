/**
 * The scalar fast path of the value codec (protocol/scalar-codec.ts) against the MessagePack library itself:
 * what it writes is byte for byte what the library writes (or, for numbers the library writes in 64 bits, reads
 * back to the same number), and what it reads, it reads as the library does. Everything else goes to the library.
 */
import { decode as libDecode, encode as libEncode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { decodeScalars, encodeScalar } from '../../dist/protocol/scalar-codec.js';
import { makeCodec } from '../../dist/protocol/index.js';
import { Rng } from './fuzz-gen.js';

const rng = new Rng(0x5ca1a7);
const ints = [0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -31, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 32), -(2 ** 32) - 1, -(2 ** 53 - 1)];
const randomInts = Array.from({ length: 4000 }, () => Math.round((rng.float() - 0.5) * 2 ** rng.range(1, 54))).filter((n) => Number.isSafeInteger(n));
const others = [2 ** 53, -(2 ** 53), 0.5, -1.25, 1e300, Number.MIN_VALUE, NaN, Infinity, -Infinity];
const strings = ['', 'a', 'ok', 'x'.repeat(31), '~ !"#$%&()*+,-./09:;<=>?', '@AZ[\\]^_`az{|}', '\u0000\u007f'];

describe('the scalar fast path of the value codec', () => {
  it('writes safe integers, short ASCII strings, booleans and nil exactly as the library does', () => {
    for (const v of [...ints, ...randomInts, ...strings, true, false, null]) {
      expect(encodeScalar(v), String(v)).toEqual(libEncode(v));
    }
    expect(encodeScalar(undefined)).toEqual(libEncode(null)); // the library writes undefined as nil too
  });

  it('writes other numbers as float64, as the library does, which it reads back as the same number', () => {
    for (const v of others) {
      const bytes = encodeScalar(v)!;
      expect(bytes).toEqual(libEncode(v));
      expect(libDecode(bytes)).toBe(v); // toBe is Object.is: NaN is NaN
    }
    expect(encodeScalar(-0)).toEqual(libEncode(-0)); // an integer to both: 0
  });

  it('leaves to the library what it does not write: long or non-ASCII strings, objects, arrays, bigints, bytes', () => {
    for (const v of ['x'.repeat(32), 'é', '😀', {}, [], [1], 1n, new Uint8Array(1), new Date(0), Symbol('s'), () => 1]) {
      expect(encodeScalar(v)).toBeUndefined();
    }
  });

  it('reads every one-byte value, and arrays of up to 15 of them, as the library does; nothing else', () => {
    for (let b = 0; b < 256; b++) {
      const bytes = Uint8Array.of(b);
      const quick = decodeScalars(bytes);
      if (quick) expect(quick.v, `0x${b.toString(16)}`).toEqual(libDecode(bytes));
      else expect([0xc0, 0xc2, 0xc3].includes(b) || b <= 0x7f || b >= 0xe0 || b === 0x90).toBe(false);
    }
    for (let i = 0; i < 2000; i++) {
      const n = rng.range(0, 15);
      const items = Array.from({ length: n }, () => rng.pick([rng.range(-32, 127), null, true, false]));
      const bytes = libEncode(items);
      expect(decodeScalars(bytes)?.v).toEqual(items);
    }
    for (const v of [[128], ['a'], [[1]], [1.5], Array(16).fill(1), { a: 1 }, 'ab', 300]) expect(decodeScalars(libEncode(v))).toBeUndefined();
    // An array header that claims more (or fewer) items than follow is the library's to refuse.
    expect(decodeScalars(Uint8Array.of(0x92, 1))).toBeUndefined();
    expect(decodeScalars(Uint8Array.of(0x91, 1, 2))).toBeUndefined();
  });

  it('the codec with it reads and writes the same values as without it', () => {
    const codec = makeCodec((url) => ({ url }));
    for (const v of [...ints, ...strings, true, false, null, [], [1, null, true, -5]]) {
      expect(codec.decode(codec.encode(v))).toEqual(v);
      expect(codec.decode(libEncode(v))).toEqual(libDecode(libEncode(v)));
    }
  });
});
