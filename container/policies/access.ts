/**
 * @module container/access
 * Who may do what to a node. The parent and every ancestor may always reach a node; anyone else must be on
 * its AccessControl list, which admits `public` only when it says so. The operator administers (lists,
 * describes, force-destroys) but runs no code on a node it is not an ancestor of or listed on.
 */
import { KeynodeError, nameToId, type NodeId } from '../../protocol/index.js';
import type { NodeRecord } from '../../store/index.js';

const aclIds = new WeakMap<NodeRecord, Set<string>>();

function aclSet(rec: NodeRecord): Set<string> {
  let set = aclIds.get(rec);
  if (!set) {
    set = new Set(rec.acl.map((e) => (e === 'public' ? 'public' : nameToId(e))));
    aclIds.set(rec, set);
  }
  return set;
}

export function isAncestor(rec: NodeRecord, principal: NodeId): boolean {
  return rec.parent === principal || rec.ancestors.includes(principal);
}

export function mayEval(rec: NodeRecord, from: NodeId): boolean {
  if (isAncestor(rec, from)) return true;
  const acl = aclSet(rec);
  return acl.has('public') || acl.has(from);
}

export function checkEval(rec: NodeRecord, from: NodeId): void {
  if (!mayEval(rec, from)) throw new KeynodeError('ERR_ACCESS_DENIED', `principal ${from} is not on the access list of node ${rec.id} and is not its ancestor`);
}

/** Describe and read logs: ancestors and the operator. */
export function checkAdminister(rec: NodeRecord, from: NodeId, operator: NodeId): void {
  if (from !== operator && !isAncestor(rec, from)) throw new KeynodeError('ERR_ACCESS_DENIED', `only an ancestor of node ${rec.id} or the operator may do that`);
}

/** Destroy: proof of the node's own key, or an ancestor (which holds its key pair). */
export function checkDestroy(rec: NodeRecord, from: NodeId): void {
  if (from !== rec.id && !isAncestor(rec, from)) throw new KeynodeError('ERR_ACCESS_DENIED', `destroying node ${rec.id} needs a signature by its own key or an ancestor's`);
}
