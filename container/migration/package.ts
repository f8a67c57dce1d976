/**
 * @module container/migration/package
 * What a move carries: the records of a node and of every node under it, and their entries in the store
 * (refs, indexes and their sizes, logs, lifetime state, budget holders, storage counters, Ephemeral holds),
 * as `[sublevel, key, value]` triples cut into parts that fit a message. The source reads it (`collect`);
 * the target checks every part of it as hostile input (`checkRecords`, `checkEntry`) before anything of it
 * can be served.
 */
import {
  checkAcl, checkBudget, checkLifetime, checkSandbox, decode, isNodeId, isPlainObject, KeynodeError,
  type BoundCall, type NodeId, type PolicyLimits,
} from '../../protocol/index.js';
import { entryBytes, nodeRange, ownUsageKey, usageKey, type NodeRecord, type Store, type SubName } from '../../store/index.js';

export type Entry = [sub: string, key: string, value: Uint8Array];

/** The most nodes one move takes (a node and everything under it). Larger subtrees move in parts, from below. */
export const MAX_SUBTREE = 10_000;
/** Sublevels a move copies: each entry's key starts with the ID of a node of the move. */
const RANGED: readonly SubName[] = ['r', 'i', 'z', 'l', 'h'];
const KEYED: readonly SubName[] = ['x', 'b'];
export const MOVED_SUBLEVELS: ReadonlySet<string> = new Set<SubName>([...RANGED, ...KEYED, 's', 'e']);
/** Longest key a move may carry (index keys are bounded by the message cap; this bounds a hostile peer). */
const MAX_KEY = 1 << 20;

function notMovable(message: string): KeynodeError {
  return new KeynodeError('ERR_NOT_MOVABLE', message);
}

/** The node and every node under it, parents before children; refused past MAX_SUBTREE. */
export async function subtree(store: Store, top: NodeRecord): Promise<NodeRecord[]> {
  const out = [top];
  for (let i = 0; i < out.length; i++) {
    for await (const kid of store.children(out[i]!.id)) {
      const rec = await store.getNode(kid);
      if (!rec) continue;
      out.push(rec);
      if (out.length > MAX_SUBTREE) throw notMovable(`node ${top.id} has more than ${MAX_SUBTREE} nodes under it; move its children first`);
    }
  }
  return out;
}

/** Every entry of these nodes that moves with them, cut into parts of about `partBytes`. */
export async function collect(store: Store, nodes: NodeRecord[], partBytes: number): Promise<{ parts: Entry[][]; bytes: number }> {
  const parts: Entry[][] = [];
  let part: Entry[] = [];
  let size = 0;
  let bytes = 0;
  const add = (sub: string, key: string, value: Uint8Array) => {
    const n = entryBytes(key, value.length);
    if (size + n > partBytes && part.length) {
      parts.push(part);
      part = [];
      size = 0;
    }
    part.push([sub, key, value]);
    size += n;
    bytes += n;
  };
  for (const rec of nodes) {
    for (const sub of RANGED) for await (const [k, v] of store.sub(sub).iterator(nodeRange(rec.id))) add(sub, k, v);
    for (const sub of KEYED) {
      const v = await store.sub(sub).get(rec.id);
      if (v) add(sub, rec.id, v);
    }
    const keys = [usageKey(rec.id), ownUsageKey(rec.id)];
    const counters = await store.getMany('s', keys);
    counters.forEach((v, i) => v && add('s', keys[i]!, v));
    if (rec.lifetime.kind === 'ephemeral') add('e', `${rec.parent}${rec.id}`, new Uint8Array(0));
  }
  if (part.length) parts.push(part);
  return { parts, bytes };
}

function bad(what: string): never {
  throw new KeynodeError('ERR_BAD_MESSAGE', `malformed move: ${what}`);
}

/** A stored capability or lease check may carry the fields a node adds when it passes one down. */
function checkStoredCall(where: string, v: unknown): BoundCall {
  if (!isPlainObject(v)) bad(`${where} is not a bound call`);
  if (v.grantName !== undefined && (typeof v.grantName !== 'string' || v.grantName.length > 256)) bad(`${where}.grantName`);
  if (v.as !== undefined && !isNodeId(v.as)) bad(`${where}.as`);
  return v as unknown as BoundCall;
}

/**
 * The records of a move, checked as a spawn's policies are (with this container's limits), and as a forest:
 * the first is a node moved (a top); any other is a top too (its parent is not in the move, and it comes
 * before its own subtree) or under one (its parent came before it, and its ancestors are its parent's and
 * its parent). Returns them as they will be stored (keys are added by the caller).
 */
export function checkRecords(raw: unknown, top: NodeId, limits: PolicyLimits): NodeRecord[] {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_SUBTREE) bad(`\`records\` must be a list of 1 to ${MAX_SUBTREE} node records`);
  const byId = new Map<NodeId, NodeRecord>();
  const out: NodeRecord[] = [];
  const ids = new Set(raw.map((r) => (isPlainObject(r) ? r.id : undefined)).filter((v): v is string => typeof v === 'string'));
  for (const [i, r] of raw.entries()) {
    if (!isPlainObject(r)) bad(`records[${i}] is not a record`);
    const { id, parent, ancestors, lifetime, sandbox, acl, budget, createdAt } = r;
    if (!isNodeId(id) || !isNodeId(parent) || byId.has(id)) bad(`records[${i}] needs a new node \`id\` and a \`parent\``);
    if (i === 0 && id !== top) bad('the first record is the node moved');
    if (!Array.isArray(ancestors) || ancestors.length > 256 || !ancestors.every(isNodeId) || ancestors.at(-1) !== parent) bad(`records[${i}].ancestors must end with its parent`);
    const p = byId.get(parent);
    if (p && (ancestors.length !== p.ancestors.length + 1 || ancestors.some((a, j) => a !== (j < p.ancestors.length ? p.ancestors[j] : p.id)))) bad(`records[${i}] is not under its parent`);
    // A top's parent lives elsewhere; a record that names a node of the move as an ancestor is under it.
    if (!p && ancestors.some((a) => byId.has(a as NodeId) || ids.has(a as string))) bad(`records[${i}] comes before a node above it`);
    if (typeof createdAt !== 'number' || !Number.isFinite(createdAt)) bad(`records[${i}].createdAt`);
    const lt = checkLifetime(isPlainObject(lifetime) && isPlainObject(lifetime.check) ? { ...lifetime, check: pick(lifetime.check) } : lifetime, limits.minPeriodSeconds);
    if (isPlainObject(lifetime) && isPlainObject(lifetime.check)) checkStoredCall(`records[${i}].lifetime.check`, lifetime.check);
    if (!isPlainObject(sandbox) || !isPlainObject(sandbox.capabilities)) bad(`records[${i}].sandbox`);
    const caps = sandbox.capabilities;
    checkSandbox({ ...sandbox, capabilities: Object.fromEntries(Object.entries(caps).map(([k, c]) => [k, pick(c)])) }, limits);
    for (const [k, c] of Object.entries(caps)) checkStoredCall(`records[${i}].sandbox.capabilities.${k}`, c);
    checkAcl(acl);
    const b = checkBudget(budget);
    if (b.maxNodes === undefined || b.maxAwake === undefined || b.memoryMB === undefined) bad(`records[${i}].budget is incomplete`);
    const rec: NodeRecord = { id, parent, ancestors: ancestors as NodeId[], lifetime: lt.kind === 'leased' ? (lifetime as NodeRecord['lifetime']) : lt, sandbox: sandbox as unknown as NodeRecord['sandbox'], acl: acl as NodeRecord['acl'], budget: budget as NodeRecord['budget'], createdAt };
    byId.set(id, rec);
    out.push(rec);
  }
  return out;
}

/** The fields checkBoundCall knows, for checking the shape; the stored call keeps its own extra fields. */
function pick(c: unknown): unknown {
  if (!isPlainObject(c)) return c;
  const { grantName: _g, as: _a, ...rest } = c;
  return rest;
}

/** One entry of a part: a sublevel a move copies, a key that belongs to a node of the move, bytes. */
export function checkEntry(e: unknown, ids: ReadonlySet<string>): Entry {
  if (!Array.isArray(e) || e.length !== 3) bad('an entry is [sublevel, key, value]');
  const [sub, key, value] = e as unknown[];
  if (typeof sub !== 'string' || !MOVED_SUBLEVELS.has(sub)) bad(`sublevel ${String(sub).slice(0, 8)} does not move`);
  if (typeof key !== 'string' || key.length < 52 || key.length > MAX_KEY || !(value instanceof Uint8Array)) bad('an entry has a string key and bytes');
  const owner = key.slice(0, 52);
  const ok =
    sub === 'x' || sub === 'b' ? ids.has(key)
    : sub === 's' ? (key.endsWith('.own') ? ids.has(key.slice(0, -4)) && key.length === 56 : ids.has(key) && key.length === 52)
    : sub === 'e' ? key.length === 104 && ids.has(key.slice(52)) && value.length === 0
    : ids.has(owner);
  if (!ok) bad(`an entry of sublevel ${sub} belongs to no node of this move`);
  if (sub === 's' && !/^\d{1,16}$/.test(Buffer.from(value).toString('latin1'))) bad('a storage counter is a decimal number of bytes');
  // A budget holder's record of a node is its count of nodes under it, nothing more (never a grant's limits).
  if (sub === 'b' && !isShaped(value, { usedNodes: true })) bad('a budget record is { usedNodes }');
  if (sub === 'x' && !isShaped(value, { last: false, failures: false, due: false })) bad('lifetime state is { last?, failures?, due? }');
  return [sub, key, value];
}

/** A MessagePack map of non-negative integers with exactly these fields (`true`: required). */
function isShaped(value: Uint8Array, fields: Record<string, boolean>): boolean {
  let v: unknown;
  try {
    v = decode(value);
  } catch {
    return false;
  }
  if (!isPlainObject(v)) return false;
  for (const [k, required] of Object.entries(fields)) if (required && !(k in v)) return false;
  return Object.entries(v).every(([k, n]) => k in fields && typeof n === 'number' && Number.isSafeInteger(n) && n >= 0);
}
