/**
 * The eval frames' binary layout (protocol/eval-frames.ts): what one end writes the other reads back exactly,
 * and the container's reading of a worker's frames refuses every malformed one with ERR_BAD_MESSAGE (never
 * another exception, never a half-read message), checked on every prefix of valid frames and on seeded
 * mutations of them. The same frames from a real (hostile) worker: test/container/hostile-worker.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { isKeynodeError } from 'keynode';
import {
  decode, decodeEvalFrame, decodeResultOrIdleFrame, encode, encodeEvalFrame, encodeResultIdleFrames, FrameReader, isEvalFrame, isResultOrIdleFrame,
  type FromWorker, type Write,
} from '../../dist/protocol/index.js';
import { checkFromWorker } from '../../dist/container/fleet/worker-messages.js';
import { Rng } from './fuzz-gen.js';

const caller = 'b'.repeat(52);
const evals = [
  { type: 'eval' as const, id: 1, h: 'a'.repeat(64), args: encode([]), from: caller },
  { type: 'eval' as const, id: 2 ** 40 + 3, h: 'rehearsal', fn: '(ctx, s) => s + "é∑😀"', args: encode([1, 'two', { three: 3 }, new Uint8Array(300)]), from: caller },
  { type: 'eval' as const, id: 7, h: 'x', fn: '', args: new Uint8Array(70_000).fill(0x90), from: caller },
];
const writes: Write[] = [
  { op: 'ref', name: 'counter', value: encode(41) },
  { op: 'put', name: 'índice', key: 'ключ 😀', value: encode({ a: [1, 2] }) },
  { op: 'del', name: 'i', key: '' },
  { op: 'ref', name: 'e', value: new Uint8Array(0) },
  // A leading U+FEFF is kept (a UTF-8 decoder's default is to drop it as a byte-order mark).
  { op: 'ref', name: '\uFEFF', value: encode(1) },
  { op: 'put', name: '\uFEFFi', key: '\uFEFFk', value: encode(2) },
];
const results = [
  { type: 'result' as const, id: 1, ok: true as const, value: encode(1), writes: [] },
  { type: 'result' as const, id: 2 ** 52, ok: true as const, value: encode('x'.repeat(5000)), writes },
];

/** The two frame bodies of a result-and-idle write. */
function bodies(bytes: Buffer): Buffer[] {
  return new FrameReader(1 << 30).push(bytes);
}

/** The container's whole reading of a worker frame body: the binary layout, then the shape checks. */
function read(body: Uint8Array): FromWorker {
  return checkFromWorker(isResultOrIdleFrame(body) ? decodeResultOrIdleFrame(body) : decode(body));
}

function refusal(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    if (!isKeynodeError(e)) throw e;
    return e.code;
  }
}

describe('eval frames', () => {
  it('an eval reads back exactly, its arguments a plain Uint8Array with a buffer of its own', () => {
    for (const m of evals) {
      const [body] = bodies(encodeEvalFrame(m));
      expect(isEvalFrame(body!)).toBe(true);
      const back = decodeEvalFrame(body!);
      expect(back).toEqual(m);
      expect('fn' in back).toBe(m.fn !== undefined);
      expect(Object.getPrototypeOf(back.args)).toBe(Uint8Array.prototype);
      expect(back.args.byteOffset).toBe(0);
      expect(back.args.buffer.byteLength).toBe(m.args.length);
    }
  });

  it('a result and its idle read back exactly, as two frames in one write, and pass the shape checks', () => {
    for (const m of results) {
      const [result, idle, ...rest] = bodies(encodeResultIdleFrames(m));
      expect(rest).toEqual([]);
      expect(read(result!)).toEqual(m);
      expect(read(idle!)).toEqual({ type: 'idle' });
      const back = decodeResultOrIdleFrame(result!) as Extract<FromWorker, { type: 'result'; ok: true }>;
      for (const bytes of [back.value, ...back.writes.flatMap((w) => ('value' in w ? [w.value] : []))]) {
        expect(Object.getPrototypeOf(bytes)).toBe(Uint8Array.prototype);
        expect(bytes.buffer.byteLength).toBe(bytes.length);
      }
    }
  });

  it('is never mistaken for MessagePack, nor MessagePack for it: every message is a map', () => {
    for (const m of [...evals, ...results, { type: 'idle' }, { type: 'ready', pid: 1 }]) {
      const b = encode(m);
      expect(isEvalFrame(b) || isResultOrIdleFrame(b)).toBe(false);
    }
  });

  it('refuses every prefix of a valid result or idle frame, and bytes past its end, with ERR_BAD_MESSAGE', () => {
    for (const m of results) {
      const [result, idle] = bodies(encodeResultIdleFrames(m));
      for (const body of [result!, idle!]) {
        for (let n = 1; n < body.length; n++) {
          // A prefix of a result that ends on an idle tag is no idle: either way it is refused.
          expect(refusal(() => read(body.subarray(0, n))), `prefix ${n} of ${body.length}`).toBe('ERR_BAD_MESSAGE');
        }
        expect(refusal(() => read(Buffer.concat([body, Buffer.from([0])])))).toBe('ERR_BAD_MESSAGE');
      }
    }
  });

  it('refuses a write count larger than the bytes could hold before building anything for it', () => {
    const body = Buffer.alloc(1 + 8 + 4 + 4);
    body[0] = 0xe2;
    body.writeDoubleBE(1, 1);
    body.writeUInt32BE(0xffffffff, 13);
    expect(refusal(() => decodeResultOrIdleFrame(body))).toBe('ERR_BAD_MESSAGE');
  });

  it('refuses, before building them, more writes than an eval may make, and names or keys too long to pass', () => {
    const head = (count: number) => {
      const b = Buffer.alloc(1 + 8 + 4 + 4);
      b[0] = 0xe2;
      b.writeDoubleBE(1, 1);
      b.writeUInt32BE(count, 13);
      return b;
    };
    // 100,001 writes that would each fit (a del with a one-byte name and an empty key): refused on the count.
    const del = Buffer.from([2, 0, 0, 0, 1, 0x61, 0, 0, 0, 0]);
    expect(refusal(() => decodeResultOrIdleFrame(Buffer.concat([head(100_001), Buffer.alloc(100_001 * del.length)])))).toBe('ERR_BAD_MESSAGE');
    expect(read(Buffer.concat([head(1000), ...Array(1000).fill(del)]))).toMatchObject({ type: 'result', writes: { length: 1000 } });
    const long = (n: number) => Buffer.concat([head(1), Buffer.from([0, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]), Buffer.alloc(n, 0x61), Buffer.alloc(4)]);
    expect(refusal(() => decodeResultOrIdleFrame(long(769)))).toBe('ERR_BAD_MESSAGE');
    expect(refusal(() => read(long(257)))).toBe('ERR_BAD_MESSAGE'); // the shape checks' 256 characters
  });

  it('an eval reads back exactly when its hash and caller change between frames of the same length', () => {
    // The worker keeps the last hash and caller it read, to reuse the string when the bytes are the same.
    const ids = [0, -1, 0.5, 2 ** 53 - 1, 1e-300, Number.MAX_VALUE];
    const seq = ['a', 'b', 'a', 'a', 'c'].flatMap((x, i) => [
      { type: 'eval' as const, id: ids[i % ids.length]!, h: x.repeat(64), args: encode([i]), from: x.repeat(52) },
      { type: 'eval' as const, id: i + 0.25, h: `${x.repeat(63)}z`, args: encode([]), from: `z${x.repeat(51)}` },
    ]);
    for (const m of seq) expect(decodeEvalFrame(bodies(encodeEvalFrame(m))[0]!)).toEqual(m);
    // A frame refused for bad UTF-8 in its hash leaves nothing behind: the next frame with the same length reads right.
    const [bad] = bodies(encodeEvalFrame({ ...seq[0]!, h: 'q'.repeat(64) }));
    bad!.fill(0xff, 1 + 8 + 1, 1 + 8 + 1 + 64);
    expect(refusal(() => decodeEvalFrame(bad!))).toBe('ERR_BAD_MESSAGE');
    expect(decodeEvalFrame(bodies(encodeEvalFrame(seq[0]!))[0]!)).toEqual(seq[0]);
    expect(decodeEvalFrame(bodies(encodeEvalFrame({ ...seq[0]!, h: 'q'.repeat(64) }))[0]!).h).toBe('q'.repeat(64));
  });

  it('the worker refuses an eval frame with a source flag other than 0 or 1', () => {
    const [body] = bodies(encodeEvalFrame(evals[0]!));
    body![1 + 8 + 1 + 64] = 2;
    expect(refusal(() => decodeEvalFrame(body!))).toBe('ERR_BAD_MESSAGE');
  });

  it('seeded mutations of valid frames are read or refused with a keynode error, nothing else', () => {
    const rng = new Rng(0x6576616c);
    const valid = results.flatMap((m) => bodies(encodeResultIdleFrames(m)));
    let refused = 0;
    for (let i = 0; i < 20_000; i++) {
      const body = Buffer.from(rng.pick(valid));
      for (let k = rng.range(1, 4); k > 0; k--) body[rng.int(body.length)] = rng.int(256);
      body[0] = rng.pick([0xe2, 0xe3]);
      const code = refusal(() => read(body));
      if (code !== undefined) {
        expect(code).toBe('ERR_BAD_MESSAGE');
        refused++;
      }
    }
    // Most mutations break something (a length, a tag, UTF-8); some land in a value's bytes and read fine.
    expect(refused).toBeGreaterThan(10_000);
  });
});
