/**
 * @module protocol/eval-frames
 * The three frames every eval costs on the container ↔ worker channel (`eval` in, an ok `result` and `idle`
 * out) in a fixed binary layout; every other message stays MessagePack. A frame's first byte tells which:
 * these tags are negative fixints in MessagePack, which no message (always a map) starts with.
 *
 * Why not MessagePack for these: a worker of a node that is called now and then runs each eval with cold
 * caches, and there MessagePack's generic paths (map keys through its key cache, short strings decoded
 * code unit by code unit into arrays) cost a worker more than the eval itself: measured over 100 nodes, the
 * worker's CPU per eval fell by 40%, and its page faults (fresh young-generation pages) by 90%. The user's
 * values inside (arguments, result, writes) are still MessagePack bytes, carried as they are.
 *
 * Layouts, big-endian; a length is a u32 unless said; strings are UTF-8:
 * - eval   E1 · id f64 · hash (u8 length, ASCII) · 0|1 · source (if 1) · arguments · caller (u8 length, ASCII)
 * - result E2 · id f64 · value · write count · writes: op (0 ref, 1 put, 2 del) · name · key (put, del) · value (ref, put)
 * - idle   E3, alone
 * The container reads the worker's frames as hostile input: every length is checked against what is left
 * before anything is read or allocated, and a frame with bytes left over is refused.
 */
import { KeynodeError } from './errors.js';
import type { FromWorker, ToWorker, Write } from './messages.js';

export const EVAL_TAG = 0xe1;
export const RESULT_TAG = 0xe2;
export const IDLE_TAG = 0xe3;

type EvalMessage = Extract<ToWorker, { type: 'eval' }>;
type OkResult = Extract<FromWorker, { type: 'result'; ok: true }>;

const OPS = ['ref', 'put', 'del'] as const;
// The shape checks' caps (container/fleet/worker-messages.ts) in UTF-8 bytes: up to 3 per UTF-16 code unit.
const MAX_WRITES = 100_000;
const MAX_NAME_BYTES = 256 * 3;
const MAX_KEY_BYTES = 1024 * 3;
// ignoreBOM: a leading U+FEFF is part of a name or key, not a byte-order mark to drop.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A frame whose body is `size` bytes: the length prefix written, the body left to fill. */
function frameOf(size: number): Buffer {
  const out = Buffer.allocUnsafe(4 + size);
  out.writeUInt32BE(size, 0);
  return out;
}

function ascii(s: string, what: string): string {
  if (s.length > 255 || !/^[\x20-\x7e]*$/.test(s)) throw new KeynodeError('ERR_INTERNAL', `${what} cannot go in an eval frame`);
  return s;
}

export function encodeEvalFrame(m: EvalMessage): Buffer {
  const h = ascii(m.h, 'the function hash');
  const from = ascii(m.from, 'the caller ID');
  const fnBytes = m.fn === undefined ? 0 : Buffer.byteLength(m.fn);
  const out = frameOf(1 + 8 + 1 + h.length + 1 + (m.fn === undefined ? 0 : 4 + fnBytes) + 4 + m.args.length + 1 + from.length);
  let at = 4;
  out[at++] = EVAL_TAG;
  at = out.writeDoubleBE(m.id, at);
  out[at++] = h.length;
  at += out.write(h, at, 'latin1');
  out[at++] = m.fn === undefined ? 0 : 1;
  if (m.fn !== undefined) {
    at = out.writeUInt32BE(fnBytes, at);
    at += out.write(m.fn, at, 'utf8');
  }
  at = out.writeUInt32BE(m.args.length, at);
  out.set(m.args, at);
  at += m.args.length;
  out[at++] = from.length;
  out.write(from, at, 'latin1');
  return out;
}

/** The encoded size of a write, or the frame would be mis-sized: one place knows the layout's lengths. */
function writeSize(w: Write): number {
  return 1 + 4 + Buffer.byteLength(w.name) + (w.op === 'ref' ? 0 : 4 + Buffer.byteLength(w.key)) + (w.op === 'del' ? 0 : 4 + w.value.length);
}

/** An ok result and the `idle` behind it, as the bytes of two frames in one buffer (one write). */
export function encodeResultIdleFrames(m: OkResult): Buffer {
  let size = 1 + 8 + 4 + m.value.length + 4;
  // Indexed loops: an iterator per loop per eval is garbage a worker called now and then pays for in page faults.
  for (let i = 0; i < m.writes.length; i++) size += writeSize(m.writes[i]!);
  const out = Buffer.allocUnsafe(4 + size + 5);
  let at = out.writeUInt32BE(size, 0);
  out[at++] = RESULT_TAG;
  at = out.writeDoubleBE(m.id, at);
  at = out.writeUInt32BE(m.value.length, at);
  out.set(m.value, at);
  at += m.value.length;
  at = out.writeUInt32BE(m.writes.length, at);
  for (let i = 0; i < m.writes.length; i++) {
    const w = m.writes[i]!;
    out[at++] = OPS.indexOf(w.op);
    at = out.writeUInt32BE(Buffer.byteLength(w.name), at);
    at += out.write(w.name, at, 'utf8');
    if (w.op !== 'ref') {
      at = out.writeUInt32BE(Buffer.byteLength(w.key), at);
      at += out.write(w.key, at, 'utf8');
    }
    if (w.op !== 'del') {
      at = out.writeUInt32BE(w.value.length, at);
      out.set(w.value, at);
      at += w.value.length;
    }
  }
  at = out.writeUInt32BE(1, at);
  out[at] = IDLE_TAG;
  return out;
}

// f64 without a DataView per frame: the eight bytes are copied in frame order into one shared buffer, which
// one DataView reads big-endian (so no branch on the machine's byte order).
const scratchBytes = new Uint8Array(8);
const scratch = new DataView(scratchBytes.buffer);

/**
 * The last string read for one field of a frame, and its bytes: a worker's evals name the same function and
 * the same caller again and again, and comparing ≤ 255 bytes costs less than a string (and a view) per frame.
 */
class Memo {
  text = '';
  readonly bytes = new Uint8Array(255);
  length = -1;
}

const hashMemo = new Memo();
const callerMemo = new Memo();

/** Reads a frame body front to back; any read past its end, or bytes left at the end, is ERR_BAD_MESSAGE. */
class Cursor {
  at = 1;
  constructor(readonly b: Uint8Array) {}

  #need(n: number): number {
    if (n > this.b.length - this.at) throw new KeynodeError('ERR_BAD_MESSAGE', 'a frame ends early');
    const at = this.at;
    this.at += n;
    return at;
  }

  u8(): number {
    return this.b[this.#need(1)]!;
  }

  u32(): number {
    const at = this.#need(4);
    return ((this.b[at]! << 24) >>> 0) + ((this.b[at + 1]! << 16) | (this.b[at + 2]! << 8) | this.b[at + 3]!);
  }

  /** A string's length, refused before the string is read when it could not pass the shape checks anyway. */
  length(max: number): number {
    const n = this.u32();
    if (n > max) throw new KeynodeError('ERR_BAD_MESSAGE', 'a name or key in a frame is too long');
    return n;
  }

  f64(): number {
    const at = this.#need(8);
    for (let i = 0; i < 8; i++) scratchBytes[i] = this.b[at + i]!;
    return scratch.getFloat64(0);
  }

  /**
   * A plain Uint8Array with an ArrayBuffer of its own (not a Buffer, whose prototype a worker's lockdown does
   * not freeze, and not a view): nothing read can reach the rest of the frame.
   */
  bytes(n: number): Uint8Array {
    const at = this.#need(n);
    const out = new Uint8Array(n);
    // A few bytes (most arguments and results) by hand: a view to copy them from would cost more.
    if (n <= 64) for (let i = 0; i < n; i++) out[i] = this.b[at + i]!;
    else out.set(this.b.subarray(at, at + n));
    return out;
  }

  text(n: number): string {
    return this.#utf8(this.#need(n), n);
  }

  /** A string of at most 255 bytes, the memo's own when the bytes are the same as last time. */
  memoText(n: number, memo: Memo): string {
    const at = this.#need(n);
    let same = n === memo.length;
    for (let i = 0; same && i < n; i++) same = this.b[at + i] === memo.bytes[i];
    if (same) return memo.text;
    const text = this.#utf8(at, n);
    memo.bytes.set(this.b.subarray(at, at + n));
    memo.length = n;
    memo.text = text;
    return text;
  }

  #utf8(at: number, n: number): string {
    try {
      return utf8.decode(this.b.subarray(at, at + n));
    } catch {
      throw new KeynodeError('ERR_BAD_MESSAGE', 'a string in a frame is not UTF-8');
    }
  }

  end(): void {
    if (this.at !== this.b.length) throw new KeynodeError('ERR_BAD_MESSAGE', 'a frame has bytes past its end');
  }
}

/** The worker's reading of an eval frame (the container's bytes, but read as carefully as any). */
export function decodeEvalFrame(body: Uint8Array): EvalMessage {
  const c = new Cursor(body);
  const id = c.f64();
  const h = c.memoText(c.u8(), hashMemo);
  const flag = c.u8();
  if (flag > 1) throw new KeynodeError('ERR_BAD_MESSAGE', 'an eval frame has a bad source flag');
  const fn = flag === 1 ? c.text(c.u32()) : undefined;
  const args = c.bytes(c.u32());
  const from = c.memoText(c.u8(), callerMemo);
  c.end();
  const m: EvalMessage = { type: 'eval', id, h, args, from };
  if (fn !== undefined) m.fn = fn;
  return m;
}

/**
 * The container's reading of a worker's result or idle frame, before the shape checks every message gets
 * (container/fleet/worker-messages.ts). Hostile input: a count is weighed against the bytes left before
 * anything is built for it.
 */
export function decodeResultOrIdleFrame(body: Uint8Array): FromWorker {
  if (body[0] === IDLE_TAG) {
    if (body.length !== 1) throw new KeynodeError('ERR_BAD_MESSAGE', 'an idle frame has bytes past its end');
    return { type: 'idle' };
  }
  const c = new Cursor(body);
  const id = c.f64();
  const value = c.bytes(c.u32());
  const count = c.u32();
  // The smallest write (op, an empty name, an empty key or value) is 9 bytes; and no eval may write more than
  // MAX_WRITES (the shape checks say so too, but only after all of them were built).
  if (count > MAX_WRITES || count * 9 > body.length - c.at) throw new KeynodeError('ERR_BAD_MESSAGE', 'a result frame counts more writes than it may or than it holds');
  const writes: Write[] = [];
  for (let i = 0; i < count; i++) {
    const op = OPS[c.u8()];
    if (op === undefined) throw new KeynodeError('ERR_BAD_MESSAGE', 'a write of an unknown kind');
    const name = c.text(c.length(MAX_NAME_BYTES));
    if (op === 'ref') writes.push({ op, name, value: c.bytes(c.u32()) });
    else if (op === 'put') writes.push({ op, name, key: c.text(c.length(MAX_KEY_BYTES)), value: c.bytes(c.u32()) });
    else writes.push({ op, name, key: c.text(c.length(MAX_KEY_BYTES)) });
  }
  c.end();
  return { type: 'result', id, ok: true, value, writes };
}

/** Whether a frame body is in this module's layouts rather than MessagePack. */
export function isEvalFrame(body: Uint8Array): boolean {
  return body[0] === EVAL_TAG;
}

export function isResultOrIdleFrame(body: Uint8Array): boolean {
  return body[0] === RESULT_TAG || body[0] === IDLE_TAG;
}
