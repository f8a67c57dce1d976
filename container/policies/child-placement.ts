/**
 * @module container/policies/child-placement
 * Where a node's child lives (ctx.spawn's `placement`): next to its parent unless asked otherwise. No
 * placement, 'load', `near` a node here or `on` this container all mean here; `on` another member of the
 * fleet, or `near` a node that lives on one, means that member (see child-elsewhere.ts). A container that
 * is not a member of this one's fleet is refused here, before anything is sent anywhere: a node's spawn
 * goes only where this container's operator said its fleet is.
 */
import { isNodeId, KeynodeError, originOf, resolveNode, type NodeId } from '../../protocol/index.js';

/** What the placement needs to know of the fleet (the Runtime). */
export interface Whereabouts {
  origin: string;
  isLocal(id: NodeId): Promise<boolean>;
  /** Where a node unknown here lives in the fleet (a node URL), if a member says so. */
  locate(id: NodeId): Promise<string | undefined>;
  /** Origins of the other members. */
  peerOrigins(): string[];
}

export interface ChildPlace {
  /** The spawn spec without its placement. */
  spec: unknown;
  /** The origin of the fleet member the child goes to, when it is not this container. */
  elsewhere?: string;
}

function placementError(message: string): KeynodeError {
  return new KeynodeError('ERR_BAD_POLICY', `ctx.spawn: ${message}`);
}

/** The container a `near` placement names: a node URL's, or the one a bare ID lives on. */
async function nearOrigin(near: unknown, w: Whereabouts): Promise<string> {
  if (typeof near !== 'string') throw placementError('`placement.near` is a node (a handle, URL or ID)');
  let named: { id: NodeId; url?: string };
  try {
    named = resolveNode(near);
  } catch {
    throw placementError('`placement.near` names no node (give a node, a node URL or a node ID)');
  }
  if (named.url !== undefined) return originOf(named.url) ?? w.origin;
  if (isNodeId(named.id) && (await w.isLocal(named.id))) return w.origin;
  const url = await w.locate(named.id);
  if (url === undefined) throw new KeynodeError('ERR_NODE_NOT_FOUND', `ctx.spawn: no member of this fleet has node ${named.id} (placement.near); name it by URL`);
  return originOf(url) ?? w.origin;
}

/** The spawn spec without its placement, and the member it places the child on when that is not this one. */
export async function placeChild(spec: unknown, w: Whereabouts): Promise<ChildPlace> {
  if (typeof spec !== 'object' || spec === null || !Object.hasOwn(spec, 'placement')) return { spec };
  const { placement, ...rest } = spec as Record<string, unknown>;
  if (placement === undefined || placement === 'load') return { spec: rest };
  let there: string | undefined;
  if (typeof placement === 'object' && placement !== null && Object.hasOwn(placement, 'on')) there = originOf((placement as { on: unknown }).on);
  else if (typeof placement === 'object' && placement !== null && Object.hasOwn(placement, 'near')) there = await nearOrigin((placement as { near: unknown }).near, w);
  else throw placementError("`placement` is 'load', { near: node } or { on: url }");
  if (there === undefined) throw placementError('`placement.on` names no container (give a container URL, http(s)://host[:port])');
  if (there === w.origin) return { spec: rest };
  if (!w.peerOrigins().includes(there)) {
    throw placementError(`${there} is not a member of this container's fleet (its --peers); a child goes to this container (${w.origin}) or to a member`);
  }
  return { spec: rest, elsewhere: there };
}
