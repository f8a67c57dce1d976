/**
 * Seeded generator of hostile requests for the HTTP edge (test/protocol/fuzz.test.ts). No I/O here: a case is
 * a list of requests (path, method, bytes) plus what may come back. Case `i` of seed `s` is built from its own
 * PRNG stream (mulberry32 of a hash of s and i), so one case can be rebuilt alone with FUZZ_SEED and
 * FUZZ_ONLY. Signed cases carry the current time, so their bytes differ between runs while their shape and
 * family do not (Ed25519 is deterministic and nonces come from the PRNG).
 *
 * The bytes are written by a small MessagePack writer of our own, so a case can use any encoding the format
 * allows (uint64, float32, ext types, long forms of short values) or lie in a header about what follows.
 */
import { createHmac, type KeyObject } from 'node:crypto';
import { Decoder, Encoder } from '@msgpack/msgpack';
import { decode, encode, isNodeId, parseEnvelope, parseNodeUrl, PROTOCOL_VERSION, verifyEnvelope } from '../../dist/protocol/index.js';

/** An Identity (from either copy of the package). */
export interface Identity {
  readonly id: string;
  sign(message: Uint8Array): Uint8Array;
}

// --- PRNG ------------------------------------------------------------------------------------------

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 32-bit seed for case `index` of run `seed` (splitmix-style mixing, so neighbours are unrelated). */
export function caseSeed(seed: number, index: number): number {
  let h = Math.imul((seed ^ 0x9e3779b9) >>> 0, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Rng {
  readonly #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  float(): number {
    return this.#next();
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.#next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  /** Mostly small sizes, sometimes large: sizes fuzzers find bugs at. */
  size(max: number): number {
    const r = this.float();
    if (r < 0.5) return this.int(Math.min(max, 16) + 1);
    if (r < 0.8) return this.int(Math.min(max, 300) + 1);
    return this.int(max + 1);
  }
  weighted<T>(items: readonly (readonly [T, number])[]): T {
    const total = items.reduce((n, [, w]) => n + w, 0);
    let r = this.float() * total;
    for (const [item, w] of items) {
      r -= w;
      if (r < 0) return item;
    }
    return items[items.length - 1]![0];
  }
}

// --- MessagePack writer ----------------------------------------------------------------------------

/** Values whose wire form a plain JS value cannot express. */
export class F32 {
  constructor(readonly value: number) {}
}
export class F64 {
  constructor(readonly value: number) {}
}
/** An integer written as uint64 / int64 (values past 2^53 included). */
export class U64 {
  constructor(readonly value: bigint) {}
}
export class I64 {
  constructor(readonly value: bigint) {}
}
export class Ext {
  constructor(readonly type: number, readonly data: Uint8Array) {}
}
/** Bytes spliced in as they are: a truncated header, a lie about a length, garbage. */
export class Raw {
  constructor(readonly bytes: Uint8Array) {}
}
/** A map with any keys, in order, duplicates allowed. */
export class Entries {
  constructor(readonly entries: [unknown, unknown][]) {}
}
/** A value forced into the long form of its header (str32 for a short string, and so on). */
export class Long {
  constructor(readonly value: string | Uint8Array | unknown[]) {}
}

const utf8 = new TextEncoder();

class Writer {
  #buf = new Uint8Array(256);
  #len = 0;
  #ensure(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }
  u8(...bytes: number[]): void {
    this.#ensure(bytes.length);
    for (const b of bytes) this.#buf[this.#len++] = b & 0xff;
  }
  u16(n: number): void {
    this.u8(n >>> 8, n);
  }
  u32(n: number): void {
    this.u8(n >>> 24, n >>> 16, n >>> 8, n);
  }
  raw(bytes: Uint8Array): void {
    this.#ensure(bytes.length);
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.length;
  }
  view(n: number, write: (v: DataView) => void): void {
    this.#ensure(n);
    write(new DataView(this.#buf.buffer, this.#len, n));
    this.#len += n;
  }
  done(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

function writeHeader(w: Writer, kind: 'str' | 'bin' | 'array' | 'map', n: number, long: boolean): void {
  switch (kind) {
    case 'str':
      if (long) return void (w.u8(0xdb), w.u32(n));
      if (n < 32) return w.u8(0xa0 | n);
      if (n < 256) return w.u8(0xd9, n);
      if (n < 65536) return void (w.u8(0xda), w.u16(n));
      return void (w.u8(0xdb), w.u32(n));
    case 'bin':
      if (long) return void (w.u8(0xc6), w.u32(n));
      if (n < 256) return w.u8(0xc4, n);
      if (n < 65536) return void (w.u8(0xc5), w.u16(n));
      return void (w.u8(0xc6), w.u32(n));
    case 'array':
      if (long) return void (w.u8(0xdd), w.u32(n));
      if (n < 16) return w.u8(0x90 | n);
      if (n < 65536) return void (w.u8(0xdc), w.u16(n));
      return void (w.u8(0xdd), w.u32(n));
    case 'map':
      if (long) return void (w.u8(0xdf), w.u32(n));
      if (n < 16) return w.u8(0x80 | n);
      if (n < 65536) return void (w.u8(0xde), w.u16(n));
      return void (w.u8(0xdf), w.u32(n));
  }
}

function writeValue(w: Writer, v: unknown): void {
  if (v === null || v === undefined) return w.u8(0xc0);
  if (v === false) return w.u8(0xc2);
  if (v === true) return w.u8(0xc3);
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && !Object.is(v, -0)) {
      if (v >= 0) {
        if (v < 128) return w.u8(v);
        if (v < 256) return w.u8(0xcc, v);
        if (v < 65536) return void (w.u8(0xcd), w.u16(v));
        if (v < 2 ** 32) return void (w.u8(0xce), w.u32(v));
        return void (w.u8(0xcf), w.view(8, (d) => d.setBigUint64(0, BigInt(v))));
      }
      if (v >= -32) return w.u8(v & 0xff);
      if (v >= -128) return w.u8(0xd0, v);
      if (v >= -32768) return void (w.u8(0xd1), w.u16(v));
      if (v >= -(2 ** 31)) return void (w.u8(0xd2), w.u32(v));
      return void (w.u8(0xd3), w.view(8, (d) => d.setBigInt64(0, BigInt(v))));
    }
    return void (w.u8(0xcb), w.view(8, (d) => d.setFloat64(0, v)));
  }
  if (typeof v === 'bigint') return writeValue(w, v < 0n ? new I64(v) : new U64(v));
  if (typeof v === 'string') {
    const b = utf8.encode(v);
    writeHeader(w, 'str', b.length, false);
    return w.raw(b);
  }
  if (v instanceof Uint8Array) {
    writeHeader(w, 'bin', v.length, false);
    return w.raw(v);
  }
  if (v instanceof F32) return void (w.u8(0xca), w.view(4, (d) => d.setFloat32(0, v.value)));
  if (v instanceof F64) return void (w.u8(0xcb), w.view(8, (d) => d.setFloat64(0, v.value)));
  if (v instanceof U64) return void (w.u8(0xcf), w.view(8, (d) => d.setBigUint64(0, BigInt.asUintN(64, v.value))));
  if (v instanceof I64) return void (w.u8(0xd3), w.view(8, (d) => d.setBigInt64(0, BigInt.asIntN(64, v.value))));
  if (v instanceof Raw) return w.raw(v.bytes);
  if (v instanceof Ext) {
    const n = v.data.length;
    const fixed = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }[n];
    if (fixed !== undefined) w.u8(fixed, v.type);
    else if (n < 256) w.u8(0xc7, n, v.type);
    else if (n < 65536) (w.u8(0xc8), w.u16(n), w.u8(v.type));
    else (w.u8(0xc9), w.u32(n), w.u8(v.type));
    return w.raw(v.data);
  }
  if (v instanceof Long) {
    const inner = v.value;
    if (typeof inner === 'string') {
      const b = utf8.encode(inner);
      writeHeader(w, 'str', b.length, true);
      return w.raw(b);
    }
    if (inner instanceof Uint8Array) {
      writeHeader(w, 'bin', inner.length, true);
      return w.raw(inner);
    }
    writeHeader(w, 'array', inner.length, true);
    for (const x of inner) writeValue(w, x);
    return;
  }
  if (v instanceof Entries) {
    writeHeader(w, 'map', v.entries.length, false);
    for (const [k, x] of v.entries) {
      writeValue(w, k);
      writeValue(w, x);
    }
    return;
  }
  if (Array.isArray(v)) {
    writeHeader(w, 'array', v.length, false);
    for (const x of v) writeValue(w, x);
    return;
  }
  if (typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    writeHeader(w, 'map', entries.length, false);
    for (const [k, x] of entries) {
      writeValue(w, k);
      writeValue(w, x);
    }
    return;
  }
  throw new Error(`fuzz writer: cannot write ${typeof v}`);
}

/** Wire bytes of `v` (see the wrapper classes for non-canonical forms). */
export function pack(v: unknown): Uint8Array {
  const w = new Writer();
  writeValue(w, v);
  return w.done();
}

/** What the container's decoder makes of bytes, or `undefined` with ok=false when it refuses them. */
export function tryDecode(bytes: Uint8Array): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: decode(bytes) };
  } catch {
    return { ok: false };
  }
}

/** Nested arrays, `depth` levels, written without recursion. */
export function deepArray(depth: number, leaf: number = 0xc0): Raw {
  const out = new Uint8Array(depth + 1).fill(0x91);
  out[depth] = leaf;
  return new Raw(out);
}

/** Nested single-entry maps `{ a: { a: ... } }`. */
export function deepMap(depth: number): Raw {
  const out = new Uint8Array(depth * 3 + 1);
  for (let i = 0; i < depth; i++) out.set([0x81, 0xa1, 0x61], i * 3);
  out[depth * 3] = 0xc0;
  return new Raw(out);
}

// --- node IDs --------------------------------------------------------------------------------------

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** Strings that look like node IDs but are not: every way an ID can be wrong. */
export function badNodeId(rng: Rng, good: string): string {
  const at = rng.int(52);
  const swap = (c: string) => good.slice(0, at) + c + good.slice(at + 1);
  switch (rng.int(12)) {
    case 0: return good.slice(0, rng.int(52)); // too short
    case 1: return good + rng.pick(['a', 'q', 'aa', good]); // too long
    case 2: return good.toUpperCase();
    case 3: return swap(good[at]!.toUpperCase() === good[at] ? 'A' : good[at]!.toUpperCase()); // one uppercase char
    case 4: return swap(rng.pick(['0', '1', '8', '9'])); // digits outside the alphabet
    case 5: {
      // The last character carries 4 padding bits that must be zero: only a and q are canonical there.
      const last = B32[(B32.indexOf(good[51]!) & 0x10) | (1 + rng.int(15))]!;
      return good.slice(0, 51) + last;
    }
    case 6: return swap(rng.pick(['=', '-', '_', ' ', '\0', '/', '.', 'é', '\u{1F600}'.slice(0, 1)]));
    case 7: return '';
    case 8: return ` ${good}`;
    case 9: return `${good.slice(0, 51)}=`;
    case 10: return Array.from({ length: 52 }, () => rng.pick(['0', '1', '8', '9', 'A', 'Z'])).join('');
    default: return good.split('').reverse().join('') + 'x'.repeat(1 + rng.int(3)); // 53 to 55 chars
  }
}

// --- hostile values --------------------------------------------------------------------------------

/** A value of a random wrong-ish type: the pool every field substitution draws from. */
export function hostileValue(rng: Rng, ctx: { nodeId: string; nodeUrl: string }): unknown {
  switch (rng.int(30)) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.pick([0, 1, 2, 7, 15, 16, 100, 127, 128, 255, 256, 1023, 1024, 65535, 65536]);
    case 3: return -rng.range(1, 2 ** 31);
    case 4: return rng.pick([2 ** 32, 2 ** 53 - 1, 2 ** 53, 1e12 + 1, 1e15, Number.MAX_SAFE_INTEGER]);
    case 5: return rng.pick([new U64(2n ** 64n - 1n), new U64(2n ** 63n), new I64(-(2n ** 63n)), new I64(-1n), new U64(2n ** 53n + 1n)]);
    case 6: return rng.pick([0.5, 1.5, -0.0, 3.14159, 1e308, -1e308, 5e-324, new F32(1.5), new F32(3.4e38), new F64(1)]);
    case 7: return rng.pick([new F64(NaN), new F32(NaN), Infinity, -Infinity, new F32(Infinity), new F64(-Infinity)]);
    case 8: return rng.pick(['', 'x', 'null', 'undefined', 'true', '0', '-1', 'NaN', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'public', 'any']);
    case 9: return String.fromCharCode(...Array.from({ length: rng.size(64) }, () => rng.int(0x2fff)));
    case 10: return 'A'.repeat(rng.pick([100, 1000, 20_000]));
    case 11: return rng.bytes(rng.pick([0, 1, 8, 31, 32, 33, 63, 64, 65, 200]));
    case 12: return [];
    case 13: return Array.from({ length: rng.range(1, 5) }, () => rng.pick([null, 1, 'x', ctx.nodeId, [], {}]));
    case 14: return {};
    case 15: return rng.pick<unknown>([{ a: 1 }, { constructor: 1 }, { toString: 'x' }, { length: 5 }, { valueOf: [] }, { then: 'x' }, new Entries([['__proto__', { a: 1 }]])]);
    case 16: return new Entries([[1, 'x'], [-1, 'y']]); // integer keys
    case 17: return new Entries([[new Uint8Array([1]), 1]]); // a bin key: refused by the decoder
    case 18: return new Ext(1, rng.pick([rng.bytes(rng.size(40)), new Uint8Array([0xff, 0xfe]), utf8.encode('not a url'), utf8.encode('http://127.0.0.1:1/' + 'a'.repeat(52)), utf8.encode('file:///etc/passwd')]));
    case 19: return new Ext(1, utf8.encode(ctx.nodeUrl)); // a well-formed node reference where a string goes
    case 20: return new Ext(rng.pick([0, 2, 5, 42, 127, -2, -128]), rng.bytes(rng.pick([0, 1, 2, 4, 8, 16, 17, 300])));
    case 21: return new Ext(-1, rng.bytes(rng.pick([0, 1, 3, 4, 8, 12, 13]))); // timestamp ext, often the wrong size
    case 22: return deepArray(rng.pick([100, 1000, 10_000]));
    case 23: return deepMap(rng.pick([100, 1000, 5_000]));
    case 24: return Array.from({ length: rng.pick([1000, 10_000]) }, (_, i) => i);
    case 25: return Object.fromEntries(Array.from({ length: rng.pick([100, 2000]) }, (_, i) => [`k${i}`, i]));
    case 26: return new Long(rng.pick(['x', '', ctx.nodeId])); // long forms of short values
    case 27: return new Raw(rng.pick([[0xc1], [0xdd, 0xff, 0xff, 0xff, 0xff], [0xdb, 0xff, 0xff, 0xff, 0xff, 0x61], [0xc6, 0x7f, 0xff, 0xff, 0xff], [0xdf, 0xff, 0xff, 0xff, 0xff], [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01], [0xd9]].map((a) => new Uint8Array(a))));
    case 28: return badNodeId(rng, ctx.nodeId);
    default: return rng.pick([ctx.nodeUrl, `${ctx.nodeUrl}?x=1`, `ftp://x/${ctx.nodeId}`, `http://[::1/${ctx.nodeId}`, `http://user:pw@127.0.0.1/${ctx.nodeId}`]);
  }
}

// --- what the container accepts (so a substitution is known to be wrong) --------------------------

const LIFETIMES = ['ephemeral', 'linked', 'resetting', 'leased', 'root'];

function isPlain(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}
const isInt = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;
function isNodeName(v: unknown): boolean {
  if (typeof v !== 'string') return false;
  if (isNodeId(v)) return true;
  try {
    parseNodeUrl(v);
    return true;
  } catch {
    return false;
  }
}
const onlyKeys = (v: Record<string, unknown>, keys: string[]) => Object.keys(v).every((k) => keys.includes(k));
/** Integer counts, and storageMB a number of MiB that may have a fraction. */
const isBudget = (v: Record<string, unknown>) =>
  onlyKeys(v, ['maxNodes', 'maxAwake', 'memoryMB', 'storageMB']) &&
  Object.entries(v).every(([k, x]) => (k === 'storageMB' ? typeof x === 'number' && Number.isFinite(x) && x >= 0 && x <= 2 ** 40 : isInt(x, 0, 1e12)));

export interface Limits {
  maxMemoryMB: number;
  maxTimeoutMs: number;
  maxMessageBytes: number;
}

/**
 * A body field a substitution may target: its path in the body and whether a decoded value would be
 * accepted there (conservatively: true when unsure, so the generator never sends something valid).
 */
interface FieldSpec {
  path: string[];
  accepts(v: unknown, limits: Limits): boolean;
}

const f = (path: string, accepts: FieldSpec['accepts']): FieldSpec => ({ path: path.split('.'), accepts });
const nodeIdField = (path: string) => f(path, (v) => isNodeId(v));
const absent = (v: unknown) => v === undefined;
/** An optional field: leaving it out is valid too. */
const o = (path: string, accepts: FieldSpec['accepts']): FieldSpec => f(path, (v, l) => absent(v) || accepts(v, l));

/** Per message type: a body the container would act on, and the fields a case may make wrong. */
export function bodyTemplates(ctx: FuzzContext): Record<string, { base: () => Record<string, unknown>; to: 'node' | 'container'; fields: FieldSpec[] }> {
  return {
    eval: {
      to: 'node',
      base: () => ({ fn: ctx.increment, args: encode([]) }),
      fields: [
        // Strings are source: only those in FN_GARBAGE are known not to evaluate to a function.
        f('fn', (v) => typeof v === 'string' && !FN_GARBAGE.includes(v)),
        f('args', (v) => v instanceof Uint8Array && (() => { const d = tryDecode(v); return d.ok && Array.isArray(d.value); })()),
        f('cap', (v) => absent(v)), // no grant in this pool verifies
        // A chain naming the node itself is a cycle; anything but a short list of node IDs is malformed.
        o('chain', (v) => Array.isArray(v) && v.length <= 64 && v.every((x) => isNodeId(x)) && !v.includes(ctx.nodeId)),
      ],
    },
    spawn: {
      to: 'container',
      base: () => ({ lifetime: { kind: 'root' }, sandbox: { refs: 'readwrite', memoryMB: 32, timeoutMs: 1000, log: true }, acl: [], budget: { maxNodes: 0 }, count: 1 }),
      fields: [
        f('lifetime', (v) => isPlain(v) && ['root', 'ephemeral', 'linked'].includes(v.kind as string) && onlyKeys(v, ['kind'])),
        f('lifetime.kind', (v) => v === 'root' || v === 'ephemeral' || v === 'linked'),
        f('sandbox', (v) => absent(v) || (isPlain(v) && Object.keys(v).length === 0)),
        o('sandbox.refs', (v) => v === null || v === 'none' || v === 'read' || v === 'readwrite'),
        o('sandbox.spawn', (v) => v === false || (isPlain(v) && onlyKeys(v, ['lifetimes']) && Array.isArray(v.lifetimes) && v.lifetimes.every((k) => LIFETIMES.includes(k as string)))),
        o('sandbox.contacts', (v) => v === 'any' || (Array.isArray(v) && v.length <= 1024 && v.every(isNodeName))),
        o('sandbox.capabilities', (v) => isPlain(v) && Object.values(v).every((c) => isPlain(c) && isNodeName(c.node) && typeof c.fn === 'string')),
        o('sandbox.memoryMB', (v, l) => isInt(v, 16, l.maxMemoryMB)),
        o('sandbox.timeoutMs', (v, l) => isInt(v, 1, l.maxTimeoutMs)),
        o('sandbox.maxMessageBytes', (v, l) => isInt(v, 1024, l.maxMessageBytes)),
        o('sandbox.log', (v) => v === null || typeof v === 'boolean'),
        o('acl', (v) => Array.isArray(v) && v.length <= 1024 && v.every((e) => e === 'public' || isNodeName(e))),
        o('budget', (v) => isPlain(v) && isBudget(v)),
        o('budget.maxNodes', (v) => isInt(v, 0, 1e12)),
        f('budget.maxAwake', (v) => absent(v) || isInt(v, 0, 1e12)),
        o('count', (v) => isInt(v, 1, 10_000)),
        // Seeds never travel in clear: only a list of nils (keys the container makes) is accepted without `seeds`.
        o('keys', (v) => Array.isArray(v) && v.every((k) => k === null || k === undefined)),
        o('seeds', () => false),
        o('sealTo', (v) => v instanceof Uint8Array && v.length === 32),
      ],
    },
    describe: { to: 'container', base: () => ({ node: ctx.decoyId }), fields: [nodeIdField('node')] },
    forceDestroy: { to: 'container', base: () => ({ node: ctx.decoyId }), fields: [nodeIdField('node')] },
    list: {
      to: 'container',
      base: () => ({ after: ctx.decoyId, limit: 10 }),
      fields: [f('after', (v) => absent(v) || isNodeId(v)), f('limit', (v) => absent(v) || isInt(v, 1, 10_000))],
    },
    logs: {
      to: 'container',
      base: () => ({ node: ctx.decoyId, after: 0, limit: 10 }),
      fields: [nodeIdField('node'), f('after', (v) => absent(v) || isInt(v, 0, Number.MAX_SAFE_INTEGER)), f('limit', (v) => absent(v) || isInt(v, 1, 10_000)), f('wait', (v) => absent(v) || isInt(v, 0, 60_000))],
    },
    grant: {
      to: 'container',
      base: () => ({ principal: ctx.strangerId, budget: { maxNodes: 1 } }),
      fields: [
        nodeIdField('principal'),
        o('budget', (v) => absent(v) || (isPlain(v) && isBudget(v))),
        o('budget.maxNodes', (v) => absent(v) || isInt(v, 0, 1e12)),
      ],
    },
    budget: { to: 'container', base: () => ({ principal: ctx.strangerId }), fields: [f('principal', (v) => absent(v) || isNodeId(v))] },
    renew: {
      to: 'container',
      base: () => ({ nodes: [ctx.decoyId] }),
      fields: [f('nodes', (v) => Array.isArray(v) && v.length <= 100_000 && v.every((x) => isNodeId(x))), f('nodes.0', (v) => isNodeId(v))],
    },
    update: {
      to: 'container',
      base: () => ({ node: ctx.decoyId, acl: [], sandbox: { log: true } }),
      fields: [
        nodeIdField('node'),
        o('acl', (v) => absent(v) || (Array.isArray(v) && v.length <= 1024 && v.every((e) => e === 'public' || isNodeName(e)))),
        // A map of sandbox fields to change (`{}` changes nothing); a list, a date or a string is the wrong shape.
        f('sandbox', (v) => absent(v) || (isPlain(v) && Object.keys(v).length === 0)),
        o('sandbox.refs', (v) => v === null || v === 'none' || v === 'read' || v === 'readwrite'),
        o('sandbox.timeoutMs', (v, l) => isInt(v, 1, l.maxTimeoutMs)),
        o('sandbox.log', (v) => v === null || typeof v === 'boolean'),
      ],
    },
  };
}

// --- cases -----------------------------------------------------------------------------------------

export interface FuzzContext {
  operator: Identity;
  /** Another key with no rights over anything here. */
  stranger: Identity;
  strangerId: string;
  containerId: string;
  /** The node whose counter proves no hostile eval ran. */
  nodeId: string;
  nodeUrl: string;
  /** A second node of the operator's, for body fields that name a node. */
  decoyId: string;
  /** Function source that increments the node's counter. */
  increment: string;
  /** A ts before the container started (refused whatever the window). */
  beforeBoot: number;
  skewMs: number;
  maxBodyBytes: number;
  limits: Limits;
  /** Valid envelopes already delivered (checkpoint evals): replays draw from these. */
  delivered: Uint8Array[];
  /** A session of the operator's (protocol v3), for session frames; `next` hands out unused counters. */
  session: { sid: Uint8Array; request: KeyObject; next(): number };
  /** Valid session frames already delivered (checkpoint evals). */
  deliveredFrames: Uint8Array[];
}

export interface Step {
  method: string;
  path: string;
  body?: Uint8Array;
  /** Send the body with Transfer-Encoding: chunked instead of Content-Length. */
  chunked?: boolean;
  /** When set, the reply's code must be one of these. */
  codes?: readonly string[];
}

export interface FuzzCase {
  index: number;
  family: string;
  what: string;
  steps: Step[];
}

const plain = new Encoder();
const DOMAIN = utf8.encode('keynode/envelope/1\n');

interface Fields {
  v?: unknown;
  type?: unknown;
  from?: unknown;
  to?: unknown;
  at?: unknown;
  ts?: unknown;
  nonce?: unknown;
  body?: unknown;
  sig?: unknown;
}

/** The signature the container would check for these (decoded) field values, by `signer`. */
function signFields(signer: Identity, f: Fields): Uint8Array {
  let fields: Uint8Array;
  try {
    fields = plain.encode([f.v, f.type, f.from, f.to, f.at, f.ts, f.nonce, f.body]);
  } catch {
    return new Uint8Array(64);
  }
  const msg = new Uint8Array(DOMAIN.length + fields.length);
  msg.set(DOMAIN);
  msg.set(fields, DOMAIN.length);
  return signer.sign(msg);
}

/** A full, valid envelope's fields (signed unless `sign` is false), with `patch` applied before signing. */
function envelopeFields(rng: Rng, ctx: FuzzContext, type: string, to: string, body: Uint8Array, patch: Partial<Fields> = {}, signer = ctx.operator): Fields {
  const f: Fields = { v: PROTOCOL_VERSION, type, from: signer.id, to, at: ctx.containerId, ts: Date.now(), nonce: rng.bytes(16), body, ...patch };
  if (!('sig' in patch)) {
    // Sign what the container would re-encode: the decoded values (a wrapper value is signed as decoded).
    const decoded: Fields = {};
    for (const k of ['v', 'type', 'from', 'to', 'at', 'ts', 'nonce', 'body'] as const) {
      const d = f[k] === undefined ? { ok: true as const, value: undefined } : tryDecode(pack(f[k]));
      decoded[k] = d.ok ? d.value : f[k];
    }
    f.sig = signFields(signer, decoded);
  }
  return f;
}

const ORDER = ['v', 'type', 'from', 'to', 'at', 'ts', 'nonce', 'body', 'sig'] as const;

function packEnvelope(f: Fields, order: readonly string[] = ORDER): Uint8Array {
  const entries: [unknown, unknown][] = [];
  for (const k of order) if ((f as Record<string, unknown>)[k] !== undefined) entries.push([k, (f as Record<string, unknown>)[k]]);
  return pack(new Entries(entries));
}

/** A fresh, valid, signed eval of the counter on the prepared node: what checkpoints send. */
export function validEval(rng: Rng, ctx: FuzzContext): Uint8Array {
  return packEnvelope(envelopeFields(rng, ctx, 'eval', ctx.nodeId, pack({ fn: ctx.increment, args: encode([]) })));
}

function nodePath(ctx: FuzzContext): string {
  return `/${ctx.nodeId}`;
}

const ANY_4XX = undefined;

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let o = obj;
  for (const key of path.slice(0, -1)) {
    if (!isPlain(o[key]) && !Array.isArray(o[key])) o[key] = {};
    o = o[key] as Record<string, unknown>;
  }
  const last = path[path.length - 1]!;
  if (value === undefined) delete o[last];
  else o[last] = value;
}

function getPath(obj: unknown, path: string[]): unknown {
  let o = obj;
  for (const key of path) {
    if (typeof o !== 'object' || o === null) return undefined;
    o = (o as Record<string, unknown>)[key];
  }
  return o;
}

/** Source strings that are not a callable function expression (each must fail to compile or to be a function). */
const FN_GARBAGE = ['', ' ', '1', 'null', 'undefined', '"a string"', 'not a function', '() =>', 'function (', '}', '})(', '/*', '//', '\0', '\uFFFF', '({})', '[]', 'x => ', 'async', 'await 1', '0; () => 1'];

type Builder = (rng: Rng, ctx: FuzzContext) => Omit<FuzzCase, 'index' | 'family'>;

const families: Record<string, Builder> = {
  /** Random bytes (0 to N), to the container, a node, or an unknown node. */
  random(rng, ctx) {
    const n = rng.size(rng.chance(0.1) ? 64 * 1024 : 1024);
    const bytes = rng.bytes(n);
    // Bias the first byte towards map headers so the decoder gets past byte one more often.
    if (n > 0 && rng.chance(0.5)) bytes[0] = rng.pick([0x88, 0x80 | rng.int(16), 0xde, 0xdf]);
    const path = rng.pick(['/', nodePath(ctx), `/${ctx.decoyId}`, `/${ctx.strangerId}`]);
    return { what: `${n} random bytes to ${path.length > 2 ? 'a node path' : '/'}`, steps: [{ method: 'POST', path, body: bytes }] };
  },

  /** Every prefix of a valid envelope (the length is swept by the case's own random draw). */
  truncated(rng, ctx) {
    const full = rng.chance(0.7) ? validEval(rng, ctx) : packEnvelope(envelopeFields(rng, ctx, 'describe', ctx.containerId, pack({ node: ctx.decoyId })));
    const len = rng.int(full.length);
    const toNode = full.length > 0 && rng.chance(0.7);
    return { what: `prefix ${len}/${full.length}`, steps: [{ method: 'POST', path: toNode ? nodePath(ctx) : '/', body: full.subarray(0, len), codes: ['ERR_BAD_MESSAGE'] }] };
  },

  /** A valid eval with bits flipped, bytes replaced, inserted, deleted, or chunks duplicated. */
  mutated(rng, ctx) {
    let bytes = validEval(rng, ctx);
    const ops: string[] = [];
    for (let m = rng.range(1, 4); m > 0; m--) {
      const at = rng.int(bytes.length);
      switch (rng.int(6)) {
        case 0: {
          const bit = 1 << rng.int(8);
          bytes = bytes.slice();
          bytes[at] = bytes[at]! ^ bit;
          ops.push(`flip ${at}:${bit}`);
          break;
        }
        case 1: {
          const b = (bytes[at]! + 1 + rng.int(255)) & 0xff; // always a different byte
          bytes = bytes.slice();
          bytes[at] = b;
          ops.push(`set ${at}=${b}`);
          break;
        }
        case 2: {
          const ins = rng.bytes(rng.range(1, 8));
          bytes = concat(bytes.subarray(0, at), ins, bytes.subarray(at));
          ops.push(`insert ${at}+${ins.length}`);
          break;
        }
        case 3: {
          const n = rng.range(1, 8);
          bytes = concat(bytes.subarray(0, at), bytes.subarray(at + n));
          ops.push(`delete ${at}-${n}`);
          break;
        }
        case 4: {
          const n = rng.range(1, 32);
          bytes = concat(bytes.subarray(0, at), bytes.subarray(at, at + n), bytes.subarray(at));
          ops.push(`dup ${at}x${n}`);
          break;
        }
        default: {
          // A header byte swapped for a different type's: map/array/str/bin/ext/uint64/float.
          const b = rng.pick([0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc4, 0xc6, 0xc7, 0xca, 0xcb, 0xcf, 0xd4, 0xd8, 0xdb, 0xdd, 0xdf, 0xff]);
          if (bytes[at] === b) break;
          bytes = bytes.slice();
          bytes[at] = b;
          ops.push(`hdr ${at}=${b}`);
        }
      }
    }
    if (ops.length === 0 || wouldRun(bytes, ctx)) {
      // Nothing changed (a header byte replaced by itself), or the change kept it valid: flip a signature bit.
      bytes = bytes.slice();
      bytes[bytes.length - 1] ^= 1;
      ops.push('flip last bit');
    }
    return { what: ops.join(', '), steps: [{ method: 'POST', path: nodePath(ctx), body: bytes }] };
  },

  /** One or two envelope fields of a wrong type (or missing, duplicated, or keyed oddly); signed over what is sent. */
  envelopeField(rng, ctx) {
    const body = pack({ fn: ctx.increment, args: encode([]) });
    const patch: Partial<Fields> = {};
    const what: string[] = [];
    let order: readonly string[] = ORDER;
    let extra: [unknown, unknown][] = [];
    const mode = rng.int(10);
    if (mode < 7) {
      for (let k = rng.chance(0.8) ? 1 : 2; k > 0; k--) {
        const key = rng.pick(ORDER);
        let value = hostileValue(rng, ctx);
        // Keep the substitution wrong: a v of 1, a known type, an ID, ts in the window... would be valid.
        if (!wrongForEnvelope(key, value, ctx)) value = new F64(NaN);
        patch[key] = value;
        what.push(`${key}=${describeValue(value)}`);
      }
    } else if (mode === 7) {
      const key = rng.pick(ORDER);
      order = ORDER.filter((k) => k !== key);
      what.push(`missing ${key}`);
    } else if (mode === 8) {
      // A duplicate key: the last one wins, and it is wrong.
      const key = rng.pick(ORDER);
      const value = rng.pick([null, 'x', new Uint8Array(3), -1, new F64(NaN)]);
      extra = [[key, value]];
      what.push(`duplicate ${key}=${describeValue(value)}`);
    } else {
      // Keys of other types, or an enormous extra field.
      extra = [rng.pick<[unknown, unknown]>([[1, 1], [null, 1], [new Uint8Array([0x76]), 1], [[1], 1], [{}, 1], ['x'.repeat(5000), 1], ['extra', new Uint8Array(100_000)], ['extra', deepArray(10_000)]])];
      what.push(`extra key ${describeValue(extra[0]![0])}`);
    }
    const signer = rng.chance(0.9) ? ctx.operator : ctx.stranger;
    const f = envelopeFields(rng, ctx, 'eval', ctx.nodeId, body, patch, signer);
    const entries: [unknown, unknown][] = order.filter((k) => (f as Record<string, unknown>)[k] !== undefined).map((k) => [k, (f as Record<string, unknown>)[k]]);
    let bytes = pack(new Entries([...entries, ...extra]));
    if (wouldRun(bytes, ctx)) {
      // Unknown keys (string or integer) are ignored by design, so this one is a valid eval: make it too big.
      bytes = pack(new Entries([...entries, ...extra, ['pad', new Uint8Array(ctx.maxBodyBytes)]]));
      what.push('(valid but for its size)');
    }
    if (bytes.length > ctx.maxBodyBytes) return { what: what.join(' ') + ' (oversize)', steps: [{ method: 'POST', path: nodePath(ctx), body: bytes, codes: ['ERR_TOO_LARGE'] }] };
    return { what: what.join(' '), steps: [{ method: 'POST', path: nodePath(ctx), body: bytes }] };
  },

  /** A validly signed message of every type whose body has one to three fields of a wrong type or value. */
  bodyField(rng, ctx) {
    const templates = bodyTemplates(ctx);
    const type = rng.pick(Object.keys(templates));
    const t = templates[type]!;
    const body = t.base();
    const what: string[] = [];
    const subs = rng.weighted([[1, 6], [2, 3], [3, 1]] as const);
    for (let k = 0; k < subs; k++) {
      const field = rng.pick(t.fields);
      let value: unknown;
      if (rng.chance(0.15)) value = undefined; // removed
      else if (type === 'eval' && field.path[0] === 'fn' && rng.chance(0.5)) value = rng.pick(FN_GARBAGE);
      else if (type === 'eval' && field.path[0] === 'args' && rng.chance(0.6)) value = pack(rng.pick([{}, 1, 'x', null, new Raw(new Uint8Array([0xc1])), new Raw(new Uint8Array([0x92, 0x01])), new Raw(new Uint8Array([0x90, 0x90])), [new Ext(1, rng.bytes(5))], deepMap(2000), new Ext(-1, rng.bytes(3))]));
      else if (field.path[0] === 'count' && rng.chance(0.3)) value = rng.pick([0, 10_001, 1e9, -1, 1.5]);
      else if (field.path[0] === 'sandbox' && field.path.length === 2 && rng.chance(0.3)) value = rng.pick([1e9, 2 ** 31, 15, 0, 2 ** 53, 'any', ['x']]); // absurd limits
      else value = hostileValue(rng, ctx);
      const decoded = value === undefined ? { ok: true as const, value: undefined } : tryDecode(pack(value));
      if (decoded.ok && field.accepts(decoded.value, ctx.limits)) continue; // valid there: not a wrong-shape case
      setPath(body, field.path, value);
      what.push(`${field.path.join('.')}=${value === undefined ? '(removed)' : describeValue(value)}`);
    }
    if (what.length === 0) {
      // Every draw happened to be valid: fall back to a body that is not a map.
      return { what: `${type} with a non-map body`, steps: [{ method: 'POST', path: t.to === 'node' ? nodePath(ctx) : '/', body: signed(rng, ctx, type, t.to, pack(rng.pick([[], 'x', 1, null, true]))), codes: ['ERR_BAD_MESSAGE'] }] };
    }
    // Make sure the body as decoded is still wrong in at least one substituted field (a later draw may have
    // replaced the parent of an earlier one).
    const check = tryDecode(pack(body));
    if (check.ok && t.fields.every((fs) => what.every((w) => !w.startsWith(`${fs.path.join('.')}=`)) || fs.accepts(getPath(check.value, fs.path), ctx.limits))) {
      return { what: `${type} with a non-map body`, steps: [{ method: 'POST', path: t.to === 'node' ? nodePath(ctx) : '/', body: signed(rng, ctx, type, t.to, pack([body])), codes: ['ERR_BAD_MESSAGE'] }] };
    }
    const bytes = signed(rng, ctx, type, t.to, pack(body));
    const oversize = bytes.length > ctx.maxBodyBytes;
    return { what: `${type} ${what.join(' ')}${oversize ? ' (oversize)' : ''}`, steps: [{ method: 'POST', path: t.to === 'node' ? nodePath(ctx) : '/', body: bytes, codes: oversize ? ['ERR_TOO_LARGE'] : ANY_4XX }] };
  },

  /** Headers that declare huge lengths with too few bytes after them, alone or inside an envelope. */
  hugeDeclared(rng, ctx) {
    const headers: [string, number[]][] = [
      ['array32 2^32-1', [0xdd, 0xff, 0xff, 0xff, 0xff]],
      ['map32 2^32-1', [0xdf, 0xff, 0xff, 0xff, 0xff]],
      ['str32 2^32-1', [0xdb, 0xff, 0xff, 0xff, 0xff]],
      ['bin32 2^32-1', [0xc6, 0xff, 0xff, 0xff, 0xff]],
      ['ext32 2^32-1', [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01]],
      ['array16 65535', [0xdc, 0xff, 0xff]],
      ['map16 65535', [0xde, 0xff, 0xff]],
      ['str16 65535', [0xda, 0xff, 0xff]],
      ['bin16 65535', [0xc5, 0xff, 0xff]],
      ['array32 2^31', [0xdd, 0x80, 0x00, 0x00, 0x00]],
      ['str8 255', [0xd9, 0xff]],
      ['uint64 cut', [0xcf, 0xff, 0xff]],
      ['float64 cut', [0xcb, 0x7f]],
    ];
    const [name, header] = rng.pick(headers);
    const tail = rng.bytes(rng.size(100));
    const where = rng.int(3);
    let bytes: Uint8Array;
    if (where === 0) bytes = concat(new Uint8Array(header), tail);
    else if (where === 1) {
      // As the value of one envelope field: the map around it can never be completed.
      const key = rng.pick(ORDER);
      bytes = concat(new Uint8Array([0x88]), pack(key), new Uint8Array(header), tail);
    } else {
      // Nested: arrays of huge declared arrays.
      bytes = concat(...Array.from({ length: rng.range(2, 50) }, () => new Uint8Array(header.length === 5 && header[0] === 0xdd ? header : [0xdd, 0xff, 0xff, 0xff, 0xff])), new Uint8Array(header), tail);
    }
    return { what: `${name} (${['alone', 'in an envelope field', 'nested'][where]})`, steps: [{ method: 'POST', path: rng.pick(['/', nodePath(ctx)]), body: bytes, codes: ['ERR_BAD_MESSAGE'] }] };
  },

  /** Deep nesting inside the size limit: the envelope itself, one of its fields, or a signed body. */
  deepNesting(rng, ctx) {
    const depth = rng.pick([1000, 5000, 10_000, 20_000]);
    const kind = rng.int(5);
    const nest = rng.chance(0.5) ? deepArray(depth) : deepMap(Math.floor(depth / 3));
    let bytes: Uint8Array;
    let what: string;
    if (kind === 0) {
      bytes = nest.bytes;
      what = 'top level';
    } else if (kind === 1) {
      const key = rng.pick(ORDER);
      bytes = packEnvelope(envelopeFields(rng, ctx, 'eval', ctx.nodeId, pack({ fn: ctx.increment, args: encode([]) }), { [key]: nest }));
      what = `envelope.${key}`;
    } else if (kind === 2) {
      // The signed body is itself a deeply nested array (not a map).
      bytes = signed(rng, ctx, 'eval', 'node', nest.bytes);
      what = 'body bytes';
    } else if (kind === 3) {
      const type = rng.pick(['spawn', 'update', 'grant', 'list', 'logs', 'renew']);
      const field = { spawn: 'sandbox', update: 'acl', grant: 'budget', list: 'after', logs: 'after', renew: 'nodes' }[type]!;
      const base = bodyTemplates(ctx)[type]!.base();
      base[field] = nest;
      bytes = signed(rng, ctx, type, 'container', pack(base));
      what = `${type}.${field}`;
    } else {
      // eval args that decode to a deep structure which is not an array.
      bytes = signed(rng, ctx, 'eval', 'node', pack({ fn: ctx.increment, args: deepMap(Math.floor(depth / 3)).bytes }));
      what = 'eval args (deep map)';
    }
    const toNode = kind <= 2 || kind === 4;
    return { what: `${what} depth ${depth}`, steps: [{ method: 'POST', path: toNode ? nodePath(ctx) : '/', body: bytes }] };
  },

  /** Malformed node IDs in `from`, `to`, the URL path, or a body field. */
  badIds(rng, ctx) {
    const where = rng.int(4);
    const bad = badNodeId(rng, rng.pick([ctx.nodeId, ctx.operator.id, ctx.decoyId]));
    if (where === 0) {
      return { what: `from=${JSON.stringify(bad)}`, steps: [{ method: 'POST', path: nodePath(ctx), body: packEnvelope(envelopeFields(rng, ctx, 'eval', ctx.nodeId, pack({ fn: ctx.increment, args: encode([]) }), { from: bad })), codes: ['ERR_BAD_MESSAGE'] }] };
    }
    if (where === 1) {
      return { what: `to=${JSON.stringify(bad)}`, steps: [{ method: 'POST', path: nodePath(ctx), body: packEnvelope(envelopeFields(rng, ctx, 'eval', bad, pack({ fn: ctx.increment, args: encode([]) }))), codes: ['ERR_BAD_MESSAGE'] }] };
    }
    if (where === 2) {
      const path = `/${pathEscape(bad)}`;
      const codes = path === '/' ? ['ERR_BAD_MESSAGE'] : ['ERR_BAD_NODE_ID', 'ERR_BAD_MESSAGE'];
      return { what: `path ${JSON.stringify(path)}`, steps: [{ method: 'POST', path, body: validEval(rng, ctx), codes }] };
    }
    const type = rng.pick(['describe', 'logs', 'forceDestroy', 'update', 'grant', 'budget', 'renew', 'list']);
    const field = { describe: 'node', logs: 'node', forceDestroy: 'node', update: 'node', grant: 'principal', budget: 'principal', renew: 'nodes', list: 'after' }[type]!;
    const base = bodyTemplates(ctx)[type]!.base();
    base[field] = field === 'nodes' ? [ctx.decoyId, bad] : bad;
    return { what: `${type}.${field}=${JSON.stringify(bad)}`, steps: [{ method: 'POST', path: '/', body: signed(rng, ctx, type, 'container', pack(base)), codes: ['ERR_BAD_MESSAGE', 'ERR_BAD_NODE_ID'] }] };
  },

  /** Versions other than PROTOCOL_VERSION and types this container does not know, correctly signed. */
  versionType(rng, ctx) {
    const body = pack({ fn: ctx.increment, args: encode([]) });
    if (rng.chance(0.5)) {
      const v = rng.pick<unknown>([0, 1, 2, 4, 99, -1, 255, 65536, 2 ** 32, 2 ** 53, 1.5, new F64(NaN), Infinity, new U64(2n ** 64n - 1n)]);
      return { what: `v=${describeValue(v)}`, steps: [{ method: 'POST', path: nodePath(ctx), body: packEnvelope(envelopeFields(rng, ctx, 'eval', ctx.nodeId, body, { v })), codes: ['ERR_BAD_VERSION'] }] };
    }
    if (rng.chance(0.2)) {
      const v = rng.pick<unknown>(['1', null, true, [1], { v: 1 }, new Uint8Array([1])]);
      return { what: `v=${describeValue(v)}`, steps: [{ method: 'POST', path: nodePath(ctx), body: packEnvelope(envelopeFields(rng, ctx, 'eval', ctx.nodeId, body, { v })), codes: ['ERR_BAD_MESSAGE'] }] };
    }
    const type = rng.pick(['Eval', 'EVAL', 'eval ', ' eval', 'eval\0', 'evaluate', '', 'wake', 'idle', 'become', 'result', 'request', 'reply', 'stop', 'ready', 'log', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'spawn'.repeat(100), 'x'.repeat(rng.range(1, 3000))]);
    return { what: `type=${JSON.stringify(type.slice(0, 40))}`, steps: [{ method: 'POST', path: rng.pick(['/', nodePath(ctx)]), body: packEnvelope(envelopeFields(rng, ctx, type, ctx.nodeId, body)), codes: ['ERR_BAD_MESSAGE'] }] };
  },

  /** Signatures that are not `from`'s over these bytes. */
  wrongKey(rng, ctx) {
    const body = pack({ fn: ctx.increment, args: encode([]) });
    const mode = rng.int(7);
    let f: Fields;
    let what: string;
    switch (mode) {
      case 0: {
        // Signed by the stranger, claiming to be the operator.
        f = envelopeFields(rng, ctx, 'eval', ctx.nodeId, body, {}, ctx.stranger);
        f.from = ctx.operator.id;
        what = 'stranger signs as operator';
        break;
      }
      case 1:
        f = envelopeFields(rng, ctx, 'eval', ctx.nodeId, body, { sig: rng.pick([new Uint8Array(64), new Uint8Array(64).fill(0xff), rng.bytes(64)]) });
        what = 'zero/ones/random sig';
        break;
      case 2: {
        // The operator's valid signature over a different message.
        const other = envelopeFields(rng, ctx, 'eval', ctx.nodeId, pack({ fn: '() => 1', args: encode([]) }));
        f = envelopeFields(rng, ctx, 'eval', ctx.nodeId, body);
        f.sig = other.sig;
        what = 'signature of another message';
        break;
      }
      case 3: {
        // `from` a well-formed ID whose key is not a curve point, or the node itself (no key here).
        const from = rng.chance(0.5) ? ctx.nodeId : 'a'.repeat(51) + 'a';
        f = envelopeFields(rng, ctx, 'eval', ctx.nodeId, body, { from });
        what = `from ${from === ctx.nodeId ? 'the node' : 'aaaa…'} signed by operator`;
        break;
      }
      case 4: {
        // One bit of the signed input changed after signing: ts, nonce, to, body.
        f = envelopeFields(rng, ctx, 'eval', ctx.nodeId, body);
        const key = rng.pick(['ts', 'nonce', 'body'] as const);
        if (key === 'ts') f.ts = (f.ts as number) + rng.range(1, 1000);
        else {
          const b = (f[key] as Uint8Array).slice();
          b[rng.int(b.length)] ^= 1 << rng.int(8);
          f[key] = b;
        }
        what = `${key} changed after signing`;
        break;
      }
      case 5: {
        // A valid signature of the canonical encoding, but the signed input is a different domain.
        f = envelopeFields(rng, ctx, 'eval', ctx.nodeId, body);
        const fields = plain.encode([f.v, f.type, f.from, f.to, f.ts, f.nonce, f.body]);
        f.sig = ctx.operator.sign(rng.chance(0.5) ? fields : concat(utf8.encode('keynode/envelope/2\n'), fields));
        what = 'signature without/with another domain tag';
        break;
      }
      default: {
        // The stranger, signing as itself, on the operator's node: authenticated but not allowed.
        f = envelopeFields(rng, ctx, rng.pick(['eval', 'destroy']), ctx.nodeId, body, {}, ctx.stranger);
        return { what: `stranger's own ${f.type as string}`, steps: [{ method: 'POST', path: nodePath(ctx), body: packEnvelope(f), codes: ['ERR_ACCESS_DENIED'] }] };
      }
    }
    return { what, steps: [{ method: 'POST', path: nodePath(ctx), body: packEnvelope(f), codes: ['ERR_BAD_SIGNATURE'] }] };
  },

  /** The same signed bytes twice: the second is a replay (also of checkpoint evals already delivered). */
  replay(rng, ctx) {
    if (ctx.delivered.length > 0 && rng.chance(0.5)) {
      const wire = rng.pick(ctx.delivered);
      return { what: 'replay of a delivered eval', steps: [{ method: 'POST', path: nodePath(ctx), body: wire, codes: ['ERR_REPLAY', 'ERR_CLOCK_SKEW'] }] };
    }
    // A signed message the container refuses after recording its nonce: any 4xx, then ERR_REPLAY.
    const t = rng.pick(['describe', 'grant', 'logs', 'list']);
    const body = t === 'grant' ? { principal: ctx.strangerId, budget: { maxNodes: -1 } } : t === 'list' ? { limit: 0 } : { node: ctx.strangerId };
    const signer = rng.chance(0.5) ? ctx.stranger : ctx.operator;
    const wire = signed(rng, ctx, t, 'container', pack(body), signer);
    const copy = rng.chance(0.5) ? wire : wire.slice();
    return { what: `${t} sent twice`, steps: [{ method: 'POST', path: '/', body: wire }, { method: 'POST', path: '/', body: copy, codes: ['ERR_REPLAY'] }] };
  },

  /**
   * Session frames (protocol v3): a broken MAC or trailer, an unknown session, a field of the wrong type or
   * value (MACed correctly over the wrong bytes), a replay of a delivered frame, an eval by a hash the
   * container does not have or that is malformed, an `extra` that speaks for someone without proof.
   */
  session(rng, ctx) {
    const path = nodePath(ctx);
    const body = pack({ fn: ctx.increment, args: encode([]) });
    const good = (): unknown[] => [PROTOCOL_VERSION, ctx.session.sid, ctx.session.next(), 'eval', ctx.nodeId, body, null];
    switch (rng.int(8)) {
      case 0: {
        const bytes = sessionFrame(ctx, good()).slice();
        bytes[bytes.length - 1 - rng.int(32)] ^= 1 << rng.int(8);
        return { what: 'session frame with a MAC bit flipped', steps: [{ method: 'POST', path, body: bytes, codes: ['ERR_BAD_SIGNATURE'] }] };
      }
      case 1: {
        const fields = good();
        fields[1] = rng.bytes(16);
        return { what: 'session frame naming an unknown session', steps: [{ method: 'POST', path, body: sessionFrame(ctx, fields), codes: ['ERR_NO_SESSION', 'ERR_OVERLOADED'] }] };
      }
      case 2:
      case 3: {
        const fields = good();
        const at = rng.int(7);
        const keys = ['v', 'sid', 'n', 'type', 'to', 'body', 'extra'] as const;
        let value = rng.chance(0.15) ? undefined : hostileValue(rng, ctx);
        if (value !== undefined && !wrongForFrame(keys[at]!, value, ctx)) value = FRAME_WRONG[keys[at]!];
        const list = value === undefined ? fields.filter((_, i) => i !== at) : fields.map((x, i) => (i === at ? value : x));
        return { what: `session frame with ${keys[at]} ${value === undefined ? 'missing' : `= ${describeValue(value)}`}`, steps: [{ method: 'POST', path, body: sessionFrame(ctx, list) }] };
      }
      case 4: {
        if (ctx.deliveredFrames.length === 0) break;
        return { what: 'replay of a delivered session frame', steps: [{ method: 'POST', path, body: rng.pick(ctx.deliveredFrames), codes: ['ERR_REPLAY'] }] };
      }
      case 5: {
        const fields = good();
        const known = rng.chance(0.5);
        const h = known ? Array.from(rng.bytes(32), (b) => b.toString(16).padStart(2, '0')).join('') : rng.pick<unknown>(['', 'abc', 'G'.repeat(64), 'A'.repeat(64), 1, rng.bytes(32), null, ['a']]);
        fields[5] = pack(new Entries([['h', h], ['args', encode([])]]));
        return { what: `eval by hash ${describeValue(h)}`, steps: [{ method: 'POST', path, body: sessionFrame(ctx, fields), codes: known ? ['ERR_UNKNOWN_CODE'] : ['ERR_BAD_MESSAGE'] }] };
      }
      case 6: {
        const fields = good();
        fields[6] = rng.pick<unknown>([{ as: ctx.strangerId }, { as: ctx.strangerId, proof: rng.bytes(64) }, { proof: rng.bytes(64) }, { as: ctx.strangerId, proof: rng.bytes(63) }, { as: 'x', proof: rng.bytes(64) }, { as: ctx.strangerId, extra: 1 }]);
        const v = fields[6] as Record<string, unknown>;
        const codes = v.as === ctx.strangerId && v.proof instanceof Uint8Array && v.proof.length === 64 ? ['ERR_BAD_SIGNATURE'] : v.as === ctx.strangerId && v.proof === undefined && !('extra' in v) ? ['ERR_ACCESS_DENIED'] : ['ERR_BAD_MESSAGE'];
        return { what: `session frame with extra ${describeValue(v)}`, steps: [{ method: 'POST', path, body: sessionFrame(ctx, fields), codes }] };
      }
      default:
        break;
    }
    // The trailer before the MAC is not a 32-byte bin header, or the frame is a prefix of a valid one.
    const bytes = sessionFrame(ctx, good());
    if (rng.chance(0.5)) {
      const b = bytes.slice();
      b[b.length - 33] = rng.pick([0x00, 0x1f, 0x21, 0xff]);
      return { what: 'session frame with a bad MAC header', steps: [{ method: 'POST', path, body: b, codes: ['ERR_BAD_MESSAGE'] }] };
    }
    return { what: 'prefix of a session frame', steps: [{ method: 'POST', path, body: bytes.subarray(0, rng.int(bytes.length)), codes: ['ERR_BAD_MESSAGE'] }] };
  },

  /** Hellos (session handshakes) with a key of the wrong type, size or value, or sent to a node's URL. */
  hello(rng, ctx) {
    const epk = rng.pick<unknown>([undefined, new Uint8Array(32), Uint8Array.of(1, ...new Uint8Array(31)), rng.bytes(31), rng.bytes(33), 'key', 32, null, [rng.bytes(32)], hostileValue(rng, ctx)]);
    const wrong = !(epk instanceof Uint8Array && epk.length === 32) || epk.every((b, i) => b === (i === 0 ? 1 : 0)) || epk.every((b) => b === 0);
    const bytes = pack(wrong ? (epk === undefined ? {} : { epk }) : { epk: new Uint8Array(32) });
    const toNode = rng.chance(0.2);
    const wire = signed(rng, ctx, 'hello', 'container', bytes);
    return { what: `hello with epk ${describeValue(epk)}${toNode ? ' to a node URL' : ''}`, steps: [{ method: 'POST', path: toNode ? nodePath(ctx) : '/', body: wire, codes: ['ERR_BAD_MESSAGE', 'ERR_OVERLOADED'] }] };
  },

  /** `ts` outside the window, before the container started, zero, negative, fractional, or not a number. */
  skew(rng, ctx) {
    const now = Date.now();
    const margin = 5_000;
    const outOfWindow: unknown[] = [now + ctx.skewMs + margin + rng.int(1e9), now - ctx.skewMs - margin - rng.int(1e9), ctx.beforeBoot, ctx.beforeBoot - rng.int(1e6), 1, 1_000_000_000_000, 8.64e15];
    const malformed: unknown[] = [0, -1, -now, now + 0.5, new F64(now + 0.25), 2 ** 53, new U64(2n ** 64n - 1n), new I64(-(2n ** 63n)), new F64(NaN), Infinity, String(now), null, new Uint8Array(8), [now]];
    if (rng.chance(0.5)) {
      const ts = rng.pick(outOfWindow);
      return { what: `ts=${describeValue(ts)} (now ${now})`, steps: [{ method: 'POST', path: nodePath(ctx), body: packEnvelope(envelopeFields(rng, ctx, 'eval', ctx.nodeId, pack({ fn: ctx.increment, args: encode([]) }), { ts })), codes: ['ERR_CLOCK_SKEW'] }] };
    }
    const ts = rng.pick(malformed);
    return { what: `ts=${describeValue(ts)}`, steps: [{ method: 'POST', path: nodePath(ctx), body: packEnvelope(envelopeFields(rng, ctx, 'eval', ctx.nodeId, pack({ fn: ctx.increment, args: encode([]) }), { ts })), codes: ['ERR_BAD_MESSAGE'] }] };
  },

  /** Bodies just over the limit, signed and valid otherwise, by Content-Length or chunked. */
  oversize(rng, ctx) {
    const pad = ctx.maxBodyBytes + rng.pick([1, 2, 100, 4096, ctx.maxBodyBytes]);
    const chunked = rng.chance(0.4);
    const wire = rng.chance(0.5)
      ? signed(rng, ctx, 'eval', 'node', pack({ fn: ctx.increment, args: pack(['x'.repeat(pad)]) }))
      : concat(validEval(rng, ctx), new Uint8Array(pad)); // a valid envelope followed by zeros
    return { what: `${wire.length} bytes${chunked ? ' chunked' : ''}`, steps: [{ method: 'POST', path: nodePath(ctx), body: wire, chunked, codes: ['ERR_TOO_LARGE'] }] };
  },

  /** Valid envelopes at the wrong place or with the wrong method. */
  route(rng, ctx) {
    const mode = rng.int(4);
    if (mode === 0) {
      // A node message POSTed to the container or to another node.
      const path = rng.pick(['/', `/${ctx.decoyId}`]);
      return { what: `eval for the node POSTed to ${path === '/' ? '/' : 'another node'}`, steps: [{ method: 'POST', path, body: validEval(rng, ctx), codes: ['ERR_BAD_MESSAGE'] }] };
    }
    if (mode === 1) {
      // A container message POSTed to a node, or with `to` another principal.
      const toNode = rng.chance(0.5);
      const bytes = signed(rng, ctx, 'describe', toNode ? 'container' : 'node', pack({ node: ctx.decoyId }));
      return { what: toNode ? 'describe POSTed to a node' : 'describe with to=node', steps: [{ method: 'POST', path: toNode ? nodePath(ctx) : '/', body: bytes, codes: ['ERR_BAD_MESSAGE'] }] };
    }
    if (mode === 2) {
      const method = rng.pick(['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
      const path = rng.pick(['/', nodePath(ctx)]);
      return { what: `${method} ${path.length > 1 ? '/<node>' : '/'}`, steps: [{ method, path, body: method === 'GET' || method === 'OPTIONS' ? undefined : validEval(rng, ctx), codes: ['ERR_METHOD_NOT_ALLOWED'] }] };
    }
    const path = rng.pick(['/livez/x', '/metrics2', '/.well-known', '/%00', '/..%2f..%2fetc%2fpasswd', `/${ctx.nodeId}/`, `//${ctx.nodeId}`, `/${ctx.nodeId}?x=1#y`, '/' + 'a'.repeat(8000)]);
    const method = rng.pick(['GET', 'POST']);
    const codes = method === 'GET' ? ['ERR_NOT_FOUND'] : ['ERR_BAD_NODE_ID'];
    // `/<id>?x=1` is the node's path with a query: POST there is a real eval, so it gets a wrong body.
    const body = method === 'POST' ? validEval(rng, ctx).subarray(0, 10) : undefined;
    return { what: `${method} ${path.slice(0, 60)}`, steps: [{ method, path, body, codes: path.startsWith(`/${ctx.nodeId}?`) ? ['ERR_BAD_MESSAGE', 'ERR_NOT_FOUND', 'ERR_METHOD_NOT_ALLOWED'] : codes }] };
  },
};

export const FAMILY_WEIGHTS: readonly (readonly [string, number])[] = [
  ['random', 10],
  ['truncated', 10],
  ['mutated', 14],
  ['envelopeField', 12],
  ['bodyField', 22],
  ['hugeDeclared', 4],
  ['deepNesting', 4],
  ['badIds', 6],
  ['versionType', 5],
  ['wrongKey', 6],
  ['replay', 3],
  ['skew', 4],
  ['oversize', 2],
  ['route', 3],
  ['session', 14],
  ['hello', 3],
];

const D_REQUEST = utf8.encode('keynode/session-request/3\n');

/** A session frame of these (possibly hostile) fields, MACed correctly over exactly its bytes. */
export function sessionFrame(ctx: FuzzContext, fields: unknown[]): Uint8Array {
  const head = pack(fields);
  // Eight elements with the MAC: a fixarray header for the fields plus one (the writer uses fixarray up to 15).
  if (head[0]! >= 0x90 && head[0]! < 0x9f) head[0] = head[0]! + 1;
  const mac = createHmac('sha256', ctx.session.request).update(D_REQUEST).update(head).digest();
  return concat(head, Uint8Array.of(0xc4, 32), mac);
}

/** A value that is known to be refused in this frame field (when the generator drew an acceptable one). */
const FRAME_WRONG = { v: 2, sid: new Uint8Array(15), n: 0, type: 'hello', to: 'x', body: 'not bytes', extra: 7 } as const;

function wrongForFrame(key: keyof typeof FRAME_WRONG, value: unknown, ctx: FuzzContext): boolean {
  const d = tryDecode(pack(value));
  if (!d.ok) return true;
  const v = d.value;
  switch (key) {
    case 'v': return v !== PROTOCOL_VERSION;
    case 'sid': return !(v instanceof Uint8Array && Buffer.from(v).equals(Buffer.from(ctx.session.sid)));
    case 'n': return !(typeof v === 'number' && Number.isSafeInteger(v) && v > 0); // an unused positive counter would run
    case 'type': return v !== 'eval' && v !== 'destroy';
    case 'to': return v !== ctx.nodeId;
    case 'body': {
      if (!(v instanceof Uint8Array)) return true;
      const b = tryDecode(v);
      return !b.ok || !isPlain(b.value) || (b.value.fn === undefined && b.value.h === undefined);
    }
    case 'extra': return !(v === null || (isPlain(v) && Object.keys(v).length === 0));
  }
}

/** Case `index` of run `seed`. */
export function makeCase(seed: number, index: number, ctx: FuzzContext): FuzzCase {
  const rng = new Rng(caseSeed(seed, index));
  const family = rng.weighted(FAMILY_WEIGHTS);
  const c = families[family]!(rng, ctx);
  return { index, family, ...c };
}

// --- helpers ---------------------------------------------------------------------------------------

function signed(rng: Rng, ctx: FuzzContext, type: string, to: 'node' | 'container', bodyBytes: Uint8Array, signer = ctx.operator): Uint8Array {
  return packEnvelope(envelopeFields(rng, ctx, type, to === 'node' ? ctx.nodeId : ctx.containerId, bodyBytes, {}, signer));
}

/** True when the container would run these bytes as the counter eval (parsed, fresh, signed by the operator). */
export function wouldRun(bytes: Uint8Array, ctx: FuzzContext): boolean {
  let e: ReturnType<typeof parseEnvelope>;
  try {
    e = parseEnvelope(bytes);
  } catch {
    return false;
  }
  if (e.ts <= ctx.beforeBoot || Math.abs(Date.now() - e.ts) > ctx.skewMs + 60_000) return false;
  return e.type === 'eval' && e.to === ctx.nodeId && e.at === ctx.containerId && e.from === ctx.operator.id && verifyEnvelope(e);
}

function pathEscape(s: string): string {
  return Array.from(Buffer.from(s, 'utf8'), (b) => (/[a-zA-Z0-9/._~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0').toUpperCase()}`)).join('');
}

function wrongForEnvelope(key: (typeof ORDER)[number], value: unknown, ctx: FuzzContext): boolean {
  const d = tryDecode(pack(value));
  if (!d.ok) return true;
  const v = d.value;
  switch (key) {
    case 'v': return v !== PROTOCOL_VERSION;
    case 'type': return v !== 'eval';
    case 'from': return v !== ctx.operator.id; // any other ID: the signature (or the ACL) refuses it
    case 'to': return v !== ctx.nodeId;
    case 'at': return v !== ctx.containerId;
    case 'ts': return !(typeof v === 'number' && Math.abs(v - Date.now()) < ctx.skewMs + 60_000);
    case 'nonce': return !(v instanceof Uint8Array && v.length >= 8 && v.length <= 32);
    case 'body': return true; // the signature covers it: any other value fails
    case 'sig': return true;
  }
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function describeValue(v: unknown): string {
  if (v instanceof Raw) return `raw(${hex(v.bytes, 12)})`;
  if (v instanceof Ext) return `ext${v.type}(${v.data.length}B)`;
  if (v instanceof F32) return `f32(${v.value})`;
  if (v instanceof F64) return `f64(${v.value})`;
  if (v instanceof U64) return `u64(${v.value})`;
  if (v instanceof I64) return `i64(${v.value})`;
  if (v instanceof Long) return `long(${describeValue(v.value)})`;
  if (v instanceof Entries) return `entries(${v.entries.length})`;
  if (v instanceof Uint8Array) return `bin(${v.length})`;
  if (Array.isArray(v)) return `array(${v.length})`;
  if (typeof v === 'string') return JSON.stringify(v.length > 30 ? `${v.slice(0, 30)}…(${v.length})` : v);
  if (typeof v === 'object' && v !== null) return `map(${Object.keys(v).length})`;
  return String(v);
}

export function hex(bytes: Uint8Array, max = 256): string {
  const h = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, max)).toString('hex');
  return bytes.length > max ? `${h}…(+${bytes.length - max} bytes)` : h;
}

/** A decoder for replies, with no extension types and no limits beyond the reply's size. */
export const replyDecoder = new Decoder();
