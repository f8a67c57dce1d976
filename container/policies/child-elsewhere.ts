/**
 * @module container/policies/child-elsewhere
 * A node's child placed on another member of the fleet (ctx.spawn with `placement`): the node itself spawns
 * it there, as the principal, in this container's session with that member (the node's key proves once per
 * session that this container speaks for it, as for its calls). The member charges the child to the node's
 * own grant there and records the node as the child's parent (ACL, describe, destroy, update). Everything
 * this container can refuse is refused before anything is sent: the parent's sandbox.spawn and narrowing,
 * lifetimes whose end needs the parent's store (Linked, Ephemeral), capabilities (bound only where the
 * keys they are signed with live). No key is asked for: the child's key stays where the child lives, and the
 * parent reaches it by its URL. The member's reply is hostile input like any peer's.
 */
import { isNodeId, isPlainObject, KeynodeError, parseNodeUrl, signBytes, type Bodies, type NodeId } from '../../protocol/index.js';
import type { AwakeNode } from '../supervisor/awake-node.js';
import type { Runtime } from '../runtime.js';
import type { Spawner } from './spawner.js';

function refused(message: string): KeynodeError {
  return new KeynodeError('ERR_BAD_POLICY', `ctx.spawn: ${message}`);
}

/**
 * Node names that mean a node of this container (bare IDs) keep that meaning there: as this container's URL,
 * so the contacts and lease check the parent's narrowing admitted are the ones the child gets.
 */
function anchored(body: Record<string, unknown>, rt: Runtime): Record<string, unknown> {
  const here = (name: unknown) => (typeof name === 'string' && isNodeId(name) ? rt.urlOf(name) : name);
  const out = { ...body };
  if (isPlainObject(out.sandbox) && Array.isArray(out.sandbox.contacts)) out.sandbox = { ...out.sandbox, contacts: out.sandbox.contacts.map(here) };
  if (isPlainObject(out.lifetime) && isPlainObject(out.lifetime.check)) out.lifetime = { ...out.lifetime, check: { ...out.lifetime.check, node: here(out.lifetime.check.node) } };
  return out;
}

/**
 * The URL of the one node a member says it spawned at `origin`, or ERR_BAD_REPLY. The URL may name the
 * member by another of the fleet's names, never a host outside the fleet: the parent's calls to it are
 * signed as the parent.
 */
function childUrl(reply: unknown, origin: string, members: string[]): string {
  const bad = (what: string) => new KeynodeError('ERR_BAD_REPLY', `${origin} answered a spawn of one node with ${what}`);
  const nodes = isPlainObject(reply) ? reply.nodes : undefined;
  if (!Array.isArray(nodes) || nodes.length !== 1 || !isPlainObject(nodes[0])) throw bad('something other than one node');
  const { id, url } = nodes[0];
  if (!isNodeId(id) || typeof url !== 'string' || url.length > 2048) throw bad('a node without an ID and URL');
  let parsed;
  try {
    parsed = parseNodeUrl(url);
  } catch {
    throw bad('a URL that is not a node URL');
  }
  const at = new URL(parsed.url).origin;
  if (parsed.id !== id || (at !== origin && !members.includes(at))) throw bad(`a node URL (${url.slice(0, 200)}) that is not node ${id} on a member of this fleet`);
  return parsed.url;
}

/** Spawns node `node`'s child from `raw` (placement removed) on the member at `origin`; its URL. */
export async function spawnElsewhere(rt: Runtime, spawner: Spawner, node: AwakeNode, raw: unknown, origin: string, deadline: number): Promise<string> {
  const { body, spec } = spawner.checkChild(node.rec, raw);
  const kind = spec.lifetime.kind;
  if (kind === 'linked' || kind === 'ephemeral') {
    throw refused(`a ${kind} child ends with its parent's store, so it lives on its parent's container (${rt.origin}), not on ${origin}. Spawn it here (no placement), or give it a Root, Resetting or Leased lifetime`);
  }
  if (Object.keys(spec.sandbox.capabilities).length) {
    throw refused(`capabilities are bound where the keys that sign them live; a child on ${origin} cannot take them from here. Spawn it here, or have it call through ctx.at`);
  }
  const key = rt.keyOf(node.rec, node);
  const as = { id: node.id, sign: (m: Uint8Array) => signBytes(key, m) };
  // Sockets to the member are shared per tenant, as the node's calls are.
  const tenant: NodeId = node.rec.ancestors[0] ?? node.id;
  let reply: unknown;
  try {
    reply = await rt.peers.requestAs(origin, as, 'spawn', anchored(body, rt) as Bodies['spawn'], Math.max(1, deadline - Date.now()), tenant);
  } catch (e) {
    if (!(e instanceof KeynodeError) || e.code !== 'ERR_BUDGET_EXHAUSTED') throw e;
    throw new KeynodeError(
      'ERR_BUDGET_EXHAUSTED',
      `${origin} refused to spawn a child of node ${node.id} (${e.message.slice(0, 300)}). A child placed on another container is charged to its parent's own grant there: that container's operator gives one with \`keynode grant ${node.id}\` (client.grant), or spawn it here (no placement)`,
      { cause: e },
    );
  }
  return childUrl(reply, origin, rt.peerOrigins());
}

/**
 * ctx.destroy of a node on another member (a child placed there): sent as the node, and the member decides
 * (the node must be an ancestor of it there). Only members are asked: a node's children live nowhere else.
 */
export async function destroyElsewhere(rt: Runtime, node: AwakeNode, id: NodeId, url: string, deadline: number): Promise<void> {
  const origin = new URL(url).origin;
  if (!rt.peerOrigins().includes(origin)) {
    throw new KeynodeError('ERR_ACCESS_DENIED', `node ${node.id} may destroy only nodes it spawned, here or on a member of this fleet; ${origin} is not one`);
  }
  const key = rt.keyOf(node.rec, node);
  const as = { id: node.id, sign: (m: Uint8Array) => signBytes(key, m) };
  await rt.peers.requestAs(origin, as, 'destroy', {}, Math.max(1, deadline - Date.now()), node.rec.ancestors[0] ?? node.id, id);
}
