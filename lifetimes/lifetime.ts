/**
 * @module lifetimes/lifetime
 * Lifetime values: when a node is destroyed without anyone asking.
 */
import { encode, parseNodeUrl, isNodeId, KeynodeError, type LifetimeSpec } from '../protocol/index.js';
import { sourceOf } from '../client/function-source.js';

/** A node named by URL or ID, or anything carrying them (a handle, `ctx.here`). */
export type NodeName = string | { readonly id: string; readonly url?: string };

/** A computation `at(node, fn, ...args)`: the check of a Leased node, or a capability. */
export interface Call {
  node: NodeName;
  fn: ((ctx: never, ...args: never[]) => unknown) | string;
  /** Arguments bound into the grant; the caller's own follow them. */
  args?: readonly unknown[];
}

export type Lifetime = LifetimeSpec;

export function nodeName(node: NodeName): string {
  if (typeof node === 'string') {
    if (isNodeId(node)) return node;
    return parseNodeUrl(node).url;
  }
  if (node && typeof node === 'object' && typeof node.url === 'string') return parseNodeUrl(node.url).url;
  if (node && typeof node === 'object' && isNodeId(node.id)) return node.id;
  throw new KeynodeError('ERR_BAD_NODE_ID', 'expected a node URL, node ID or node handle');
}

/** The handle a call was made with, kept out of the wire form: a client signs grants with its key. */
export const CALL_NODE = Symbol.for('keynode.call.node');

export function callSpec(call: Call): { node: string; fn: string; args?: Uint8Array } {
  // Checked as at() checks it: a lease check or capability with an outside variable fails here, not later.
  const fn = typeof call.fn === 'function' ? sourceOf(call.fn) : call.fn;
  if (typeof fn !== 'string') throw new KeynodeError('ERR_BAD_FUNCTION', 'a call needs { node, fn } with fn a function');
  if (call.args !== undefined && !Array.isArray(call.args)) throw new KeynodeError('ERR_BAD_POLICY', 'a call\'s bound `args` is an array');
  const spec: { node: string; fn: string; args?: Uint8Array } = { node: nodeName(call.node), fn };
  if (call.args !== undefined) spec.args = encode(call.args);
  Object.defineProperty(spec, CALL_NODE, { value: call.node, enumerable: false });
  return spec;
}

/**
 * @example
 * await client.spawn({ lifetime: Lifetime.root() });
 * await client.spawn({ lifetime: Lifetime.resetting(3600) });
 * await client.spawn({ lifetime: Lifetime.leased(60, { node: owner, fn: async (ctx) => (await ctx.ref('active').get()) === true }) });
 */
export const Lifetime = {
  /** Lives until destroyed explicitly. */
  root: (): Lifetime => ({ kind: 'root' }),
  /** Destroyed when its parent no longer holds it (handle collected, client gone, parent asleep without it in state). */
  ephemeral: (): Lifetime => ({ kind: 'ephemeral' }),
  /** Destroyed when its parent is destroyed, to any depth. */
  linked: (): Lifetime => ({ kind: 'linked' }),
  /** Its refs and indexes are emptied after `seconds` without an eval; the node lives on. */
  resetting: (seconds: number): Lifetime => ({ kind: 'resetting', seconds }),
  /** Every `seconds` the container runs `check`; false, or the check's node gone, destroys the node. */
  leased: (seconds: number, check: Call): Lifetime => ({ kind: 'leased', seconds, check: callSpec(check) }),
} as const;
