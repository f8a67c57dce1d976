/**
 * @module store/keys
 * Key layout. Node IDs are fixed-length (52 chars of [a-z2-7]), so `id + rest` never collides and a
 * node's whole range is `[id, id + '\uffff')`. Names may not contain NUL, which separates name from key.
 */
import type { NodeId } from '../protocol/index.js';

export const END = '\uffff';

export const refKey = (id: NodeId, name: string): string => `${id}${name}`;
export const indexKey = (id: NodeId, name: string, key: string): string => `${id}${name}\u0000${key}`;
export const indexRange = (id: NodeId, name: string, prefix = ''): { gte: string; lt: string } => ({
  gte: `${id}${name}\u0000${prefix}`,
  lt: `${id}${name}\u0000${prefix}${END}`,
});
export const nodeRange = (id: NodeId): { gte: string; lt: string } => ({ gte: id, lt: `${id}${END}` });
export const childKey = (parent: NodeId, child: NodeId): string => `${parent}${child}`;
export const logKey = (id: NodeId, seq: number): string => `${id}${seq.toString(16).padStart(14, '0')}`;
/** Deadlines sort by time: 15 digits of milliseconds cover the year 33658. */
export const deadlineKey = (at: number, id: NodeId, kind: string): string => `${String(Math.max(0, Math.floor(at))).padStart(15, '0')}${id}${kind}`;
export function parseDeadlineKey(key: string): { at: number; id: NodeId; kind: string } {
  return { at: Number(key.slice(0, 15)), id: key.slice(15, 67), kind: key.slice(67) };
}
