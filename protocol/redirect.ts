/**
 * @module protocol/redirect
 * Following `ERR_MOVED`: a container answers a request for a node that moved with the node's URL now, in a
 * reply authenticated like any other (so a party on the path cannot forge one). Clients and containers
 * follow it to the same node only, at most MAX_REDIRECTS times, and never back to a container they already
 * asked: a loop ends with `ERR_REDIRECT_LOOP`, not a hang.
 */
import { isKeynodeError, KeynodeError } from './errors.js';
import { parseNodeUrl, type NodeId } from './ids.js';

export const MAX_REDIRECTS = 4;

/**
 * The URL to send the request to next, when `e` is a redirect for node `id`; undefined for any other error.
 * `seen` holds the origins asked so far (the caller adds the first); this adds the next one.
 */
export function redirectTarget(e: unknown, id: NodeId, seen: Set<string>): string | undefined {
  if (!isKeynodeError(e) || e.code !== 'ERR_MOVED' || e.location === undefined) return undefined;
  let next;
  try {
    next = parseNodeUrl(e.location);
  } catch (cause) {
    throw new KeynodeError('ERR_BAD_REPLY', `a container redirected node ${id} to something that is not a node URL`, { cause });
  }
  if (next.id !== id) throw new KeynodeError('ERR_BAD_REPLY', `a container redirected node ${id} to another node (${next.id})`);
  if (seen.has(next.origin) || seen.size > MAX_REDIRECTS) {
    throw new KeynodeError('ERR_REDIRECT_LOOP', `node ${id}: redirects went round ${[...seen].join(' → ')} → ${next.origin}; its containers disagree about where it lives (ask their operators)`);
  }
  seen.add(next.origin);
  return next.url;
}
