/**
 * @module container/edge/sealed-keys
 * Private keys at the edge: a spawn's client-chosen seeds arrive in a nacl box sealed to the container's box
 * key, and the new nodes' keys leave in a box sealed to the key the spawner named (`sealTo`). A seed in clear
 * is refused, and a spawn that names no key to seal to gets no keys back at all.
 */
import { KeynodeError, openKeys, sealKeys, type Bodies, type BoxPair, type SealedBox } from '../../protocol/index.js';
import type { SpawnedNode } from '../policies/spawner.js';

type SpawnKeys = NonNullable<Bodies['spawn']['keys']>;

function bad(what: string): never {
  throw new KeynodeError('ERR_BAD_MESSAGE', `malformed spawn: ${what}`);
}

/**
 * The spawn's `keys` with their seeds taken out of `seeds`: one 32-byte seed per entry that is a map, in
 * order (a nil entry is a key the container makes).
 */
export function openChosenKeys(keys: unknown, seeds: unknown, box: BoxPair): SpawnKeys | undefined {
  if (keys === undefined) {
    if (seeds !== undefined) bad('`seeds` without `keys`');
    return undefined;
  }
  if (!Array.isArray(keys) || keys.length > 10_000) bad('`keys` must be a list of at most 10,000 entries');
  let chosen = 0;
  for (const k of keys) {
    if (k === null || k === undefined) continue;
    if (typeof k !== 'object' || Array.isArray(k) || k instanceof Uint8Array) bad('each entry of `keys` is a map or nil');
    if (Object.hasOwn(k, 'seed')) bad('a seed never travels in clear: seal the seeds to the container (`seeds`, a nacl box to its boxKey)');
    chosen++;
  }
  const opened = chosen ? openKeys(seeds, box, chosen) : [];
  if (!chosen && seeds !== undefined) bad('`seeds` holds keys no entry of `keys` uses');
  let next = 0;
  return keys.map((k) => (k === null || k === undefined ? undefined : { ...(k as object), seed: opened[next++]! })) as SpawnKeys;
}

/** The reply to a spawn: every node's ID and URL, and their keys in one box to `sealTo` (none without it). */
export function spawnReply(nodes: SpawnedNode[], sealTo: unknown, box: BoxPair): { nodes: { id: string; url: string }[]; keys?: SealedBox } {
  const listed = nodes.map((n) => ({ id: n.id, url: n.url }));
  if (sealTo === undefined) return { nodes: listed };
  if (!(sealTo instanceof Uint8Array) || sealTo.length !== 32) bad('`sealTo` is a 32-byte X25519 public key');
  return { nodes: listed, keys: sealKeys(nodes.map((n) => n.secretKey), sealTo, box) };
}
