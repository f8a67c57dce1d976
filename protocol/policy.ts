/**
 * @module protocol/policy
 * The four fences of a node, as plain data: what the client sends at spawn and the container stores.
 * Validation is strict: unknown fields are rejected with a pointer rather than ignored.
 */
import { KeynodeError } from './errors.js';
import { isNodeId, parseNodeUrl, preview, type NodeId } from './ids.js';
import { isMsgpackArray } from './codec.js';

export type LifetimeKind = 'ephemeral' | 'linked' | 'resetting' | 'leased' | 'root';
export const LIFETIME_KINDS: readonly LifetimeKind[] = ['ephemeral', 'linked', 'resetting', 'leased', 'root'];

/** A computation `at(node, fn)` as data: the check of a Leased node, the target of a capability. */
export interface BoundCall {
  /** Node URL (or ID, for a node on the same container). */
  node: string;
  /** Function source, called as fn(ctx, ...args). */
  fn: string;
  /** Arguments bound with the call (MessagePack of an array), passed before the caller's own. */
  args?: Uint8Array;
  /** The target's signature binding this call to its holder (see protocol/grants). */
  grant?: Uint8Array;
  /** The name the grant was signed under, when it differs (a capability passed down by a node). */
  grantName?: string;
  /** The node whose grant this is and who signs the calls, when not the holder itself. */
  as?: string;
}

export type LifetimeSpec =
  | { kind: 'root' }
  | { kind: 'ephemeral' }
  | { kind: 'linked' }
  | { kind: 'resetting'; seconds: number }
  | { kind: 'leased'; seconds: number; check: BoundCall };

export type RefsMode = 'none' | 'read' | 'readwrite';

/**
 * Which other nodes may have used this node's worker process before it (one after another, never at once):
 * `'tenant'`, nodes of the same top-level principal; `'process'`, none (a fresh process, which ends when
 * the node sleeps).
 */
export type Isolation = 'tenant' | 'process';

export interface SandboxSpec {
  refs: RefsMode;
  spawn: false | { lifetimes: LifetimeKind[] };
  contacts: 'any' | string[];
  capabilities: Record<string, BoundCall>;
  memoryMB: number;
  timeoutMs: number;
  /** Largest eval message (function + arguments) and result, in bytes. */
  maxMessageBytes: number;
  log: boolean;
  /** Stored records written before this field existed read as `'tenant'`. */
  isolation: Isolation;
}

export interface BudgetSpec {
  maxNodes: number;
  maxAwake: number;
  memoryMB: number;
  /**
   * Disk its subtree may hold, in MiB (fractions allowed): keys and values of refs and indexes, and log lines.
   * Records written before this field existed lack it (no limit of their own; their ancestors' still apply).
   */
  storageMB: number;
}

/** Bytes in one `storageMB`: a mebibyte, like `memoryMB`. */
export const STORAGE_MB = 1024 * 1024;

/** A `storageMB` as whole bytes (undefined, from a record older than the field: no limit). */
export function storageBytes(mb: number | undefined): number {
  return mb === undefined ? Infinity : Math.floor(mb * STORAGE_MB);
}

/** `'public'`, a principal ID, or a node URL. */
export type AclEntry = string;

export interface SpawnSpec {
  lifetime: LifetimeSpec;
  sandbox: SandboxSpec;
  acl: AclEntry[];
  budget: Partial<BudgetSpec>;
}

/** What the container allows at most; defaults are what an omitted field becomes. */
export interface PolicyLimits {
  defaultMemoryMB: number;
  maxMemoryMB: number;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  defaultMaxMessageBytes: number;
  maxMessageBytes: number;
  /** Shortest Resetting or Leased period: a lease check every millisecond would be a flood on its node. */
  minPeriodSeconds: number;
}

const SANDBOX_FIELDS = new Set(['refs', 'spawn', 'contacts', 'capabilities', 'memoryMB', 'timeoutMs', 'maxMessageBytes', 'log', 'isolation']);
const BUDGET_FIELDS = new Set(['maxNodes', 'maxAwake', 'memoryMB', 'storageMB']);
const CAP_NAME_RE = /^[A-Za-z_$][\w$]{0,63}$/;
const MAX_FN_SOURCE = 64 * 1024;
const MAX_LIST = 1024;

function bad(message: string): never {
  throw new KeynodeError('ERR_BAD_POLICY', message);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function describe(v: unknown): string {
  return `\`${preview(v)}\` (${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v})`;
}

function onlyFields(where: string, v: Record<string, unknown>, allowed: Set<string>): void {
  for (const k of Object.keys(v)) if (!allowed.has(k)) bad(`Unknown ${where} field \`${k}\`; expected one of ${[...allowed].join(', ')}`);
}

function integer(where: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    bad(`Expected \`${where}\` to be an integer from ${min} to ${max}, got ${describe(v)}`);
  }
  return v;
}

function seconds(where: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) bad(`Expected \`${where}\` to be a number of seconds from ${min} to ${max}, got ${describe(v)}`);
  return v;
}

/** A node named by ID or URL in a policy (ACL, contacts, capability target). */
export function checkNodeName(where: string, v: unknown): string {
  if (typeof v !== 'string') bad(`Expected \`${where}\` to be a node ID or node URL, got ${describe(v)}`);
  if (isNodeId(v)) return v;
  try {
    return parseNodeUrl(v).url;
  } catch (e) {
    bad(`Expected \`${where}\` to be a node ID or node URL: ${(e as Error).message}`);
  }
}

export function checkBoundCall(where: string, v: unknown): BoundCall {
  if (!isPlainObject(v)) bad(`Expected \`${where}\` to be { node, fn }, got ${describe(v)}`);
  onlyFields(where, v, new Set(['node', 'fn', 'grant', 'args']));
  const node = checkNodeName(`${where}.node`, v.node);
  if (typeof v.fn !== 'string' || v.fn.length === 0 || v.fn.length > MAX_FN_SOURCE) bad(`Expected \`${where}.fn\` to be function source up to ${MAX_FN_SOURCE} chars`);
  if (v.grant !== undefined && !(v.grant instanceof Uint8Array && v.grant.length === 64)) bad(`Expected \`${where}.grant\` to be a 64-byte signature`);
  if (v.args !== undefined && !(v.args instanceof Uint8Array && v.args.length <= MAX_FN_SOURCE && isMsgpackArray(v.args))) bad(`Expected \`${where}.args\` to be a MessagePack array of up to ${MAX_FN_SOURCE} bytes`);
  const call: BoundCall = { node, fn: v.fn };
  if (v.args !== undefined) call.args = v.args as Uint8Array;
  if (v.grant !== undefined) call.grant = v.grant as Uint8Array;
  return call;
}

export function checkLifetime(v: unknown, minSeconds = 1): LifetimeSpec {
  if (!isPlainObject(v) || typeof v.kind !== 'string') bad(`Expected \`lifetime\` to be a Lifetime (Lifetime.root(), ...), got ${describe(v)}`);
  const MAX_SECONDS = 10 * 365 * 24 * 3600;
  switch (v.kind) {
    case 'root':
    case 'ephemeral':
    case 'linked':
      onlyFields('lifetime', v, new Set(['kind']));
      return { kind: v.kind };
    case 'resetting':
      onlyFields('lifetime', v, new Set(['kind', 'seconds']));
      return { kind: 'resetting', seconds: seconds('lifetime.seconds', v.seconds, minSeconds, MAX_SECONDS) };
    case 'leased':
      onlyFields('lifetime', v, new Set(['kind', 'seconds', 'check']));
      return { kind: 'leased', seconds: seconds('lifetime.seconds', v.seconds, minSeconds, MAX_SECONDS), check: checkBoundCall('lifetime.check', v.check) };
    default:
      bad(`Unknown lifetime kind ${describe(v.kind)}; expected one of ${LIFETIME_KINDS.join(', ')}`);
  }
}

export function checkSandbox(v: unknown, limits: PolicyLimits): SandboxSpec {
  if (v === undefined) v = {};
  if (!isPlainObject(v)) bad(`Expected \`sandbox\` to be an object, got ${describe(v)}`);
  onlyFields('sandbox', v, SANDBOX_FIELDS);
  const refs = v.refs ?? 'readwrite';
  if (refs !== 'none' && refs !== 'read' && refs !== 'readwrite') bad(`Expected \`sandbox.refs\` to be 'none', 'read' or 'readwrite', got ${describe(refs)}`);

  let spawn: SandboxSpec['spawn'] = false;
  if (v.spawn !== undefined && v.spawn !== false) {
    if (!isPlainObject(v.spawn) || !Array.isArray(v.spawn.lifetimes)) bad(`Expected \`sandbox.spawn\` to be false or { lifetimes: [...] }, got ${describe(v.spawn)}`);
    onlyFields('sandbox.spawn', v.spawn, new Set(['lifetimes']));
    const kinds = new Set<LifetimeKind>();
    for (const k of v.spawn.lifetimes) {
      if (!LIFETIME_KINDS.includes(k as LifetimeKind)) bad(`Unknown lifetime ${describe(k)} in \`sandbox.spawn.lifetimes\`; expected ${LIFETIME_KINDS.join(', ')}`);
      kinds.add(k as LifetimeKind);
    }
    spawn = { lifetimes: [...kinds] };
  }

  let contacts: SandboxSpec['contacts'] = [];
  if (v.contacts === 'any') contacts = 'any';
  else if (v.contacts !== undefined) {
    if (!Array.isArray(v.contacts) || v.contacts.length > MAX_LIST) bad(`Expected \`sandbox.contacts\` to be 'any' or a list of up to ${MAX_LIST} node IDs/URLs, got ${describe(v.contacts)}`);
    contacts = v.contacts.map((c, i) => checkNodeName(`sandbox.contacts[${i}]`, c));
  }

  const capabilities: Record<string, BoundCall> = {};
  if (v.capabilities !== undefined) {
    if (!isPlainObject(v.capabilities)) bad(`Expected \`sandbox.capabilities\` to be { name: { node, fn } }, got ${describe(v.capabilities)}`);
    const names = Object.keys(v.capabilities);
    if (names.length > 64) bad('A sandbox may bind at most 64 capabilities');
    for (const name of names) {
      if (!CAP_NAME_RE.test(name)) bad(`Capability name ${describe(name)} must be a JavaScript identifier`);
      capabilities[name] = checkBoundCall(`sandbox.capabilities.${name}`, v.capabilities[name]);
    }
  }

  const memoryMB = v.memoryMB === undefined ? limits.defaultMemoryMB : integer('sandbox.memoryMB', v.memoryMB, 16, limits.maxMemoryMB);
  const timeoutMs = v.timeoutMs === undefined ? limits.defaultTimeoutMs : integer('sandbox.timeoutMs', v.timeoutMs, 1, limits.maxTimeoutMs);
  const maxMessageBytes = v.maxMessageBytes === undefined ? limits.defaultMaxMessageBytes : integer('sandbox.maxMessageBytes', v.maxMessageBytes, 1024, limits.maxMessageBytes);
  const log = v.log ?? true;
  if (typeof log !== 'boolean') bad(`Expected \`sandbox.log\` to be a boolean, got ${describe(log)}`);
  const isolation = v.isolation ?? 'tenant';
  if (isolation !== 'tenant' && isolation !== 'process') bad(`Expected \`sandbox.isolation\` to be 'tenant' or 'process', got ${describe(isolation)}`);
  return { refs, spawn, contacts, capabilities, memoryMB, timeoutMs, maxMessageBytes, log, isolation };
}

export function checkAcl(v: unknown): AclEntry[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > MAX_LIST) bad(`Expected \`acl\` to be a list of up to ${MAX_LIST} principal IDs, node URLs or 'public', got ${describe(v)}`);
  return [...new Set(v.map((e, i) => (e === 'public' ? 'public' : checkNodeName(`acl[${i}]`, e))))];
}

/**
 * Unset fields are filled by the container from the spawner: `maxNodes` 0 (no children), `maxAwake`,
 * `memoryMB` and `storageMB` the spawner's own limits (the child is bounded only by what its ancestors have left).
 */
export function checkBudget(v: unknown): Partial<BudgetSpec> {
  if (v === undefined) v = {};
  if (!isPlainObject(v)) bad(`Expected \`budget\` to be { maxNodes, maxAwake, memoryMB, storageMB }, got ${describe(v)}`);
  onlyFields('budget', v, BUDGET_FIELDS);
  const MAX = 1e12;
  const out: Partial<BudgetSpec> = {};
  for (const k of ['maxNodes', 'maxAwake', 'memoryMB'] as const) if (v[k] !== undefined) out[k] = integer(`budget.${k}`, v[k], 0, MAX);
  if (v.storageMB !== undefined) out.storageMB = checkStorageMB('budget.storageMB', v.storageMB);
  return out;
}

/** MiB of disk, fractions allowed (0.5 is 512 KiB), up to an exbibyte. */
export function checkStorageMB(where: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 2 ** 40) bad(`Expected \`${where}\` to be a number of MiB from 0 to ${2 ** 40} (fractions allowed), got ${describe(v)}`);
  return v;
}

export function checkSpawnSpec(v: unknown, limits: PolicyLimits): SpawnSpec {
  if (!isPlainObject(v)) bad(`Expected spawn options to be an object, got ${describe(v)}`);
  onlyFields('spawn', v, new Set(['lifetime', 'sandbox', 'acl', 'budget']));
  return { lifetime: checkLifetime(v.lifetime, limits.minPeriodSeconds), sandbox: checkSandbox(v.sandbox, limits), acl: checkAcl(v.acl), budget: checkBudget(v.budget) };
}

/** The ID named by an ACL entry or contact (they may be IDs or URLs). */
export function nameToId(name: string): NodeId {
  return isNodeId(name) ? name : parseNodeUrl(name).id;
}
