/**
 * @module store/keys
 * Key layout. Node IDs are fixed-length (52 chars of [a-z2-7]), so `id + rest` never collides. Names may not
 * contain NUL, which separates name from key. LevelDB orders keys by their UTF-8 bytes, which is code point
 * order, so "every key starting with P" is exactly [P, successor(P)): no sentinel character can be exceeded
 * by a user's key (an emoji, U+FFFF) and escape a range.
 */
import type { NodeId } from '../protocol/index.js';

/** The least string greater than every string that starts with `prefix` (in code point order). */
export function successor(prefix: string): string {
  const points = [...prefix];
  while (points.length) {
    const last = points.pop()!.codePointAt(0)!;
    if (last === 0x10ffff) continue; // nothing above it: carry into the previous character
    const next = last + 1 === 0xd800 ? 0xe000 : last + 1; // surrogates are not characters
    return points.join('') + String.fromCodePoint(next);
  }
  throw new RangeError('no successor of an empty or all-U+10FFFF prefix');
}

export const refKey = (id: NodeId, name: string): string => `${id}${name}`;
export const indexKey = (id: NodeId, name: string, key: string): string => `${id}${name}\u0000${key}`;
export const indexRange = (id: NodeId, name: string, prefix = ''): { gte: string; lt: string } => ({
  gte: `${id}${name}\u0000${prefix}`,
  lt: successor(`${id}${name}\u0000${prefix}`),
});
export const nodeRange = (id: NodeId): { gte: string; lt: string } => ({ gte: id, lt: successor(id) });
export const childKey = (parent: NodeId, child: NodeId): string => `${parent}${child}`;
export const logKey = (id: NodeId, seq: number): string => `${id}${seq.toString(16).padStart(14, '0')}`;
/** Deadlines sort by time: 15 digits of milliseconds cover the year 33658. */
export const deadlineKey = (at: number, id: NodeId, kind: string): string => `${String(Math.max(0, Math.floor(at))).padStart(15, '0')}${id}${kind}`;
export function parseDeadlineKey(key: string): { at: number; id: NodeId; kind: string } {
  return { at: Number(key.slice(0, 15)), id: key.slice(15, 67), kind: key.slice(67) };
}

/** Tombstones by when they were written (sublevel `o`): the expired ones are a prefix of the range. */
export const tombstoneKey = (at: number, id: NodeId): string => deadlineKey(at, id, '');

/** What `level` puts before every key of a one-letter sublevel (`!r!`). */
const SUBLEVEL_PREFIX_BYTES = 3;
/** Bytes one entry of a one-letter sublevel takes as LevelDB stores it: prefix, key (UTF-8) and value. */
export const entryBytes = (key: string, valueBytes: number): number => SUBLEVEL_PREFIX_BYTES + Buffer.byteLength(key, 'utf8') + valueBytes;

/**
 * Sublevel `z` holds, for every ref and index entry, the bytes it was charged: an overwrite or delete gives back
 * exactly that, read from 4 bytes rather than from a value that may be megabytes. Keyed `<id><r|i><name...>`,
 * so a node's sizes are one range.
 */
export const sizeKey = (sub: 'r' | 'i', key: string): string => `${key.slice(0, 52)}${sub}${key.slice(52)}`;
/** The `r` or `i` key a size entry stands for. */
export const sizedEntry = (zKey: string): { sub: 'r' | 'i'; key: string } => ({ sub: zKey[52] as 'r' | 'i', key: zKey.slice(0, 52) + zKey.slice(53) });
const SIZE_BYTES = 4;
/** What one ref or index entry is charged: itself and its size entry (one byte more of key, 4 of value). */
export const stateEntryBytes = (key: string, valueBytes: number): number => entryBytes(key, valueBytes) + entryBytes(key, 1 + SIZE_BYTES);
export function encodeSize(n: number): Uint8Array {
  const out = new Uint8Array(SIZE_BYTES);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}
export function decodeSize(v: Uint8Array): number {
  return v.length === SIZE_BYTES ? new DataView(v.buffer, v.byteOffset, SIZE_BYTES).getUint32(0) : 0;
}
/**
 * Storage counters (sublevel `s`): `<id>` is what a holder's subtree stores (checked against its storageMB);
 * `<id>.own` is what a node stores itself (what its ancestors get back when it is destroyed).
 */
export const usageKey = (id: NodeId): string => id;
export const ownUsageKey = (id: NodeId): string => `${id}.own`;
