/**
 * @module container/policies/contacts
 * What a `sandbox.contacts` list lets a node reach, in one place. The check on each `ctx.at` and the
 * narrowing of what a node hands its children (their contacts, their lease checks) must compare the same
 * things, or a child becomes a way around its parent's list: a contact names a node, and for a node on
 * another container also the container it lives on, so both the ID and the origin count.
 */
import { isNodeId, parseNodeUrl, type BoundCall, type NodeId } from '../../protocol/index.js';

/**
 * True when `contacts` admit a call to node `id` named by `url`. `local`: the node lives (or lived) on this
 * container, so the call is delivered here whatever host a URL names. An ID alone admits only a local node;
 * a URL admits its node here, or at exactly that origin.
 */
export function contactAdmits(contacts: readonly string[], id: NodeId, url: string | undefined, local: boolean): boolean {
  const target = url === undefined ? undefined : parseNodeUrl(url).url;
  for (const c of contacts) {
    if (isNodeId(c)) {
      if (local && c === id) return true;
      continue;
    }
    const listed = parseNodeUrl(c);
    if (listed.id === id && (local || listed.url === target)) return true;
  }
  return false;
}

/**
 * Where a call to `name` can go, as the contact check sees it: a bare ID, or a URL naming this container
 * (`origin`, tested as Runtime.isLocal tests it), reaches only a node here; any other URL may leave for its
 * own origin.
 */
function destination(name: string, origin: string): { id: NodeId; away?: string } {
  if (isNodeId(name)) return { id: name };
  const p = parseNodeUrl(name);
  return p.url.startsWith(`${origin}/`) ? { id: p.id } : { id: p.id, away: p.url };
}

/**
 * True when every call `name` can make is one the parent may make: a node here the parent lists (in any
 * form) or is, or the very URL the parent lists for a node elsewhere. `origin` is this container's.
 */
export function contactWithin(parent: { id: NodeId; contacts: readonly string[] }, name: string, origin: string): boolean {
  const d = destination(name, origin);
  if (d.away === undefined) return d.id === parent.id || parent.contacts.some((c) => destination(c, origin).id === d.id);
  return parent.contacts.some((c) => destination(c, origin).away === d.away);
}

/** True when `call` is exactly one of the parent's capabilities: same destination, function and bound arguments. */
export function sameCall(cap: BoundCall, call: BoundCall, origin: string): boolean {
  const a = destination(cap.node, origin);
  const b = destination(call.node, origin);
  const args = (x?: Uint8Array) => Buffer.from(x ?? [0x90]);
  return a.id === b.id && a.away === b.away && cap.fn === call.fn && args(cap.args).equals(args(call.args));
}
