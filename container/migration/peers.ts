/**
 * @module container/migration/peers
 * The other containers of this one's fleet, as origins: the `--peers` URL entries as configured (trusted as
 * given, so a move or a lookup works from the first moment), and the members membership has found behind
 * `dns:` entries and checked since (their identities pinned; only those that answered its last round).
 */
import type { ContainerOptions } from '../config.js';

/** Origins of the peers, without this container's own. */
export function peerUrls(options: Pick<ContainerOptions, 'peers'>, self: string, members: () => string[] = () => []): () => string[] {
  const configured = (options.peers ?? []).filter((p) => !p.startsWith('dns:')).map((p) => new URL(p).origin);
  return () => [...new Set([...configured, ...members().map((u) => new URL(u).origin)])].filter((o) => o !== self);
}
