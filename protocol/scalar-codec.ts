/**
 * @module protocol/scalar-codec
 * MessagePack for the values most functions take and return (no arguments or a few small ones; a number, a
 * boolean, null or a short ASCII string back) without going through the library: a worker called now and then
 * runs each eval with cold caches, where the library's generic encoder and decoder cost it ~100 µs per eval
 * (measured over 100 workers). The bytes are the MessagePack format's own, as the library reads them;
 * anything else returns undefined and the caller uses the library.
 */

/** A one-byte MessagePack value: positive and negative fixints, nil, false, true. */
function oneByte(b: number): { v: unknown } | undefined {
  if (b <= 0x7f) return { v: b };
  if (b >= 0xe0) return { v: b - 0x100 };
  if (b === 0xc0) return { v: null };
  if (b === 0xc2) return { v: false };
  if (b === 0xc3) return { v: true };
  return undefined;
}

/** Decodes one one-byte value, or an array of up to 15 of them (the arguments of most calls); else undefined. */
export function decodeScalars(bytes: Uint8Array): { v: unknown } | undefined {
  const head = bytes[0];
  if (head === undefined) return undefined;
  if (bytes.length === 1) return head === 0x90 ? { v: [] } : oneByte(head);
  const n = head - 0x90;
  if (n < 1 || n > 15 || bytes.length !== n + 1) return undefined;
  const out: unknown[] = [];
  for (let i = 1; i <= n; i++) {
    const item = oneByte(bytes[i]!);
    if (!item) return undefined;
    out.push(item.v);
  }
  return { v: out };
}

const MAX_STR = 31; // a fixstr

/** Encodes undefined/null, a boolean, a number or an ASCII string of up to 31 characters; else undefined. */
export function encodeScalar(v: unknown): Uint8Array | undefined {
  switch (typeof v) {
    case 'undefined':
      return Uint8Array.of(0xc0);
    case 'boolean':
      return Uint8Array.of(v ? 0xc3 : 0xc2);
    case 'number':
      return encodeNumber(v);
    case 'string': {
      if (v.length > MAX_STR) return undefined;
      const out = new Uint8Array(1 + v.length);
      out[0] = 0xa0 | v.length;
      for (let i = 0; i < v.length; i++) {
        const c = v.charCodeAt(i);
        if (c > 0x7f) return undefined;
        out[i + 1] = c;
      }
      return out;
    }
    case 'object':
      return v === null ? Uint8Array.of(0xc0) : undefined;
    default:
      return undefined;
  }
}

function encodeNumber(n: number): Uint8Array {
  // Integers as the library writes them (the smallest format that holds them; -0 as 0), others as float64.
  if (Number.isSafeInteger(n)) {
    if (n >= 0) {
      if (n <= 0x7f) return Uint8Array.of(n);
      if (n <= 0xff) return Uint8Array.of(0xcc, n);
      if (n <= 0xffff) return Uint8Array.of(0xcd, n >> 8, n & 0xff);
      if (n <= 0xffffffff) return Uint8Array.of(0xce, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
      return wide(0xcf, n);
    }
    if (n >= -0x20) return Uint8Array.of(n & 0xff);
    if (n >= -0x80) return Uint8Array.of(0xd0, n & 0xff);
    if (n >= -0x8000) return Uint8Array.of(0xd1, (n >> 8) & 0xff, n & 0xff);
    if (n >= -0x80000000) return Uint8Array.of(0xd2, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
    return wide(0xd3, n);
  }
  const out = new Uint8Array(9);
  out[0] = 0xcb;
  new DataView(out.buffer).setFloat64(1, n);
  return out;
}

/** uint64 (0xcf) or int64 (0xd3) of a safe integer: high and low 32 bits, two's complement below zero. */
function wide(tag: number, n: number): Uint8Array {
  const out = new Uint8Array(9);
  const view = new DataView(out.buffer);
  const high = Math.floor(n / 0x1_0000_0000);
  out[0] = tag;
  view.setInt32(1, high);
  view.setUint32(5, n - high * 0x1_0000_0000);
  return out;
}
