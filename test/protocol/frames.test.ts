import { describe, expect, it } from 'vitest';
import { isKeynodeError } from 'keynode';
import { encode, decode, encodeFrame, FrameReader } from '../../dist/protocol/index.js';

const messages = [
  { type: 'ready', pid: 1234 },
  { type: 'idle' },
  { type: 'eval', id: 1, fn: '(ctx) => 1', args: encode([1, 'two', { three: 3 }]), from: 'x'.repeat(52) },
  { type: 'log', eval: 1, line: 'é'.repeat(300) },
  {},
];
const payloads = messages.map((m) => encode(m));
const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));

/** Decodes payloads; copied first so byte fields come back as plain Uint8Arrays, not Buffer views. */
function asMessages(frames: Buffer[]): unknown[] {
  return frames.map((f) => decode(new Uint8Array(f)));
}

describe('stdio frames', () => {
  it('a frame is a 4-byte big-endian length and the payload', () => {
    const frame = encodeFrame(new Uint8Array([7, 8, 9]));
    expect([...frame]).toEqual([0, 0, 0, 3, 7, 8, 9]);
    expect(new FrameReader(16).push(frame)).toEqual([Buffer.from([7, 8, 9])]);
  });

  it('reassembles a stream split at every byte boundary into two chunks', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const reader = new FrameReader(1 << 20);
      const frames = [...reader.push(stream.subarray(0, cut)), ...reader.push(stream.subarray(cut))];
      expect(asMessages(frames), `cut at ${cut}`).toEqual(messages);
    }
  });

  it('reassembles a stream fed one byte at a time, yielding each frame when its last byte arrives', () => {
    const reader = new FrameReader(1 << 20);
    const ends = payloads.reduce<number[]>((acc, p) => [...acc, (acc.at(-1) ?? 0) + 4 + p.length], []);
    const frames: Buffer[] = [];
    for (let i = 0; i < stream.length; i++) {
      const out = reader.push(stream.subarray(i, i + 1));
      if (ends.includes(i + 1)) expect(out, `byte ${i}`).toHaveLength(1);
      else expect(out, `byte ${i}`).toEqual([]);
      frames.push(...out);
    }
    expect(asMessages(frames)).toEqual(messages);
  });

  it('yields many frames from one chunk, in order', () => {
    const many = Array.from({ length: 1000 }, (_, i) => ({ i, pad: 'x'.repeat(i % 17) }));
    const reader = new FrameReader(1024);
    const frames = reader.push(Buffer.concat(many.map((m) => encodeFrame(encode(m)))));
    expect(asMessages(frames)).toEqual(many);
  });

  it('keeps a partial frame after complete ones for the next chunk', () => {
    const reader = new FrameReader(1 << 20);
    const cut = 4 + payloads[0]!.length + 4 + payloads[1]!.length + 3;
    expect(asMessages(reader.push(stream.subarray(0, cut)))).toEqual(messages.slice(0, 2));
    expect(asMessages(reader.push(stream.subarray(cut)))).toEqual(messages.slice(2));
    expect(reader.push(Buffer.alloc(0))).toEqual([]);
  });

  it('handles empty payloads and empty chunks', () => {
    const reader = new FrameReader(8);
    expect(reader.push(Buffer.alloc(0))).toEqual([]);
    const out = reader.push(Buffer.concat([encodeFrame(new Uint8Array(0)), encodeFrame(new Uint8Array(0))]));
    expect(out.map((f) => f.length)).toEqual([0, 0]);
  });

  it('accepts a frame of exactly the limit', () => {
    const payload = new Uint8Array(1000).fill(42);
    expect(new FrameReader(1000).push(encodeFrame(payload))).toEqual([Buffer.from(payload)]);
  });

  it('refuses a frame over the limit with ERR_TOO_LARGE as soon as its header arrives', () => {
    const reader = new FrameReader(1000);
    const frame = encodeFrame(new Uint8Array(1001));
    // The first three header bytes are not enough to know.
    expect(reader.push(frame.subarray(0, 3))).toEqual([]);
    let err: unknown;
    try {
      reader.push(frame.subarray(3, 4));
    } catch (e) {
      err = e;
    }
    expect(isKeynodeError(err)).toBe(true);
    expect((err as { code: string }).code).toBe('ERR_TOO_LARGE');
  });

  it('refuses a huge declared length without waiting for (or allocating) its body', () => {
    const reader = new FrameReader(1 << 20);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0xffffffff, 0);
    let err: unknown;
    try {
      reader.push(Buffer.concat([encodeFrame(encode({ ok: 1 })), header]));
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe('ERR_TOO_LARGE');
  });

  it('read(): frames are views into a read buffer used again for the next read, whole ones handed over uncopied', () => {
    // The channel's use: one buffer, read into again (here: scribbled over) as soon as read() returns.
    for (let cut = 0; cut <= stream.length; cut++) {
      const reader = new FrameReader(1 << 20);
      const buffer = Buffer.alloc(stream.length);
      const got: unknown[] = [];
      const views: Buffer[] = [];
      for (const chunk of [stream.subarray(0, cut), stream.subarray(cut)]) {
        chunk.copy(buffer);
        reader.read(buffer, chunk.length, (frame) => {
          got.push(decode(new Uint8Array(frame)));
          if (frame.buffer === buffer.buffer) views.push(frame);
        });
        buffer.fill(0xc1); // 0xc1 is never used in MessagePack: a frame kept past read() would not decode
      }
      expect(got, `cut at ${cut}`).toEqual(messages);
      // With nothing held over, whole frames of the first read are views into the buffer, not copies.
      if (cut === stream.length) expect(views).toHaveLength(messages.length);
    }
  });

  it('read(): a frame spread over many reads, and a handler that throws, leave the stream in step', () => {
    const reader = new FrameReader(1 << 20);
    const buffer = Buffer.alloc(stream.length);
    const got: unknown[] = [];
    let throwOnce = true;
    const feed = (chunk: Buffer) => {
      chunk.copy(buffer);
      reader.read(buffer, chunk.length, (frame) => {
        const m = decode(new Uint8Array(frame));
        if (throwOnce && got.length === 1) {
          throwOnce = false;
          throw new Error('handler failed');
        }
        got.push(m);
      });
      buffer.fill(0xc1);
    };
    // The first two frames and a few bytes of the third in one read: the handler throws on the second.
    const cut = 4 + payloads[0]!.length + 4 + payloads[1]!.length + 2;
    expect(() => feed(stream.subarray(0, cut))).toThrow('handler failed');
    // The rest in reads of three bytes: every frame after the one the handler refused arrives whole, in order.
    for (let at = cut; at < stream.length; at += 3) feed(stream.subarray(at, Math.min(at + 3, stream.length)));
    expect(got).toEqual([messages[0], ...messages.slice(2)]);
  });

  it('read(): a frame over the limit is refused with ERR_TOO_LARGE, as push() does', () => {
    const frame = encodeFrame(new Uint8Array(1001));
    let err: unknown;
    try {
      new FrameReader(1000).read(frame, frame.length, () => undefined);
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe('ERR_TOO_LARGE');
  });
});
