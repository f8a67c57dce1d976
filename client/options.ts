/**
 * @module client/options
 * The typed spawn options a program writes, and their wire form. Functions become source and handles
 * become URLs here; the container validates the result again and is the authority.
 */
import { generateKeyPair, grantMessage, idFromPublicKey, LEASE_GRANT, resolveNode, type BudgetSpec, type Identity, type LifetimeKind, type RefsMode } from '../protocol/index.js';
import { CALL_NODE, callSpec, nodeName, type Call, type Lifetime, type NodeName } from '../lifetimes/index.js';
import type { Placement } from './placement.js';

export interface SandboxOptions {
  /** The node's own persistent state: 'none' | 'read' | 'readwrite' (default 'readwrite'). */
  refs?: RefsMode;
  /** Whether the node may spawn children, and with which lifetimes (default false). */
  spawn?: false | { lifetimes: readonly LifetimeKind[] };
  /** Nodes its code may `ctx.at` (default none; its own descendants are always reachable). */
  contacts?: 'any' | readonly NodeName[];
  /** Named computations bound by the spawner: `ctx.caps.name(...args)` runs exactly `fn` on `node`. */
  capabilities?: Record<string, Call>;
  /** Heap of the node's process in MB (default: the container's, 64). */
  memoryMB?: number;
  /** Longest one eval may run, in ms (default: the container's, 5000). */
  timeoutMs?: number;
  /** Largest eval (function + arguments) and result, in bytes (default 1 MiB). */
  maxMessageBytes?: number;
  /** Keep ctx.log lines (default true). */
  log?: boolean;
  /**
   * Which earlier nodes this node's worker process may have served, one after another (default 'tenant':
   * nodes of the same top-level principal). 'process': a process no other node used, ended when the node
   * sleeps; for code that must not trust other code run under the same principal.
   */
  isolation?: 'tenant' | 'process';
}

/** A principal allowed to send code: an ID, a node URL, a handle or identity, or 'public'. */
export type AclEntry = 'public' | NodeName;

export interface SpawnOptions {
  lifetime: Lifetime;
  /**
   * Which container the node lives on (see client/placement.ts): 'load' (a fleet client's default), next to
   * a node (`{ near: node }`), or on a named container (`{ on: url }`). Without it a client that is not a
   * fleet client spawns on the container it connected to.
   */
  placement?: Placement;
  sandbox?: SandboxOptions;
  acl?: readonly AclEntry[];
  budget?: Partial<BudgetSpec>;
}

export function spawnBody(options: SpawnOptions): Record<string, unknown> {
  // `placement` is the client's choice of container; it is not part of the spawn message.
  const { lifetime, sandbox, acl, budget, placement: _placement, ...rest } = options as SpawnOptions & Record<string, unknown>;
  const body: Record<string, unknown> = { ...rest, lifetime };
  if (sandbox !== undefined) {
    const s: Record<string, unknown> = { ...sandbox };
    if (Array.isArray(sandbox.contacts)) s.contacts = sandbox.contacts.map(nodeName);
    if (sandbox.capabilities) s.capabilities = Object.fromEntries(Object.entries(sandbox.capabilities).map(([k, c]) => [k, callSpec(c)]));
    body.sandbox = s;
  }
  if (acl !== undefined) body.acl = acl.map((e) => (e === 'public' ? e : nodeName(e)));
  if (budget !== undefined) body.budget = budget;
  return body;
}

interface Signer {
  name: string;
  target: string;
  fn: string;
  args?: Uint8Array;
  identity: Identity;
}

/** Calls bound on nodes whose keys this client holds: it signs their grants itself (works across containers). */
function signers(options: SpawnOptions): Signer[] {
  const out: Signer[] = [];
  const add = (name: string, node: unknown, fn: string, args?: Uint8Array) => {
    const identity = typeof node === 'object' && node !== null && 'identity' in node && typeof (node as { identity: unknown }).identity === 'function' ? (node as { identity(): Identity | undefined }).identity() : undefined;
    if (identity) out.push({ name, target: resolveNode(node as NodeName).id, fn, identity, ...(args ? { args } : {}) });
  };
  for (const [name, call] of Object.entries(options.sandbox?.capabilities ?? {})) {
    const spec = callSpec(call);
    add(name, call.node, spec.fn, spec.args);
  }
  const lt = options.lifetime as { kind: string; check?: { fn: string; [CALL_NODE]?: unknown } };
  if (lt.kind === 'leased' && lt.check) add(LEASE_GRANT, lt.check[CALL_NODE], lt.check.fn);
  return out;
}

/** Keys and grants for `count` new nodes, when any binding needs a grant this client signs. */
export function clientKeys(options: SpawnOptions, count: number): { seed: Uint8Array; grants: Record<string, Uint8Array> }[] | undefined {
  const list = signers(options);
  if (!list.length) return undefined;
  return Array.from({ length: count }, () => {
    const kp = generateKeyPair();
    const holder = idFromPublicKey(kp.publicKey);
    const grants: Record<string, Uint8Array> = {};
    for (const s of list) grants[s.name] = s.identity.sign(grantMessage(s.target, holder, s.name, s.fn, s.args));
    return { seed: kp.seed, grants };
  });
}
