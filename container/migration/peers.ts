/**
 * @module container/migration/peers
 * The other containers of this one's fleet, as origins. Only `--peers` entries that are URLs count here:
 * `dns:` entries are resolved by membership (elsewhere), which replaces this one function.
 */
import type { ContainerOptions } from '../config.js';

/** Origins of the configured peers, without this container's own. */
export function peerUrls(options: Pick<ContainerOptions, 'peers'>, self: string): () => string[] {
  const urls = (options.peers ?? []).filter((p) => !p.startsWith('dns:')).map((p) => new URL(p).origin).filter((o) => o !== self);
  const list = [...new Set(urls)];
  return () => list;
}
