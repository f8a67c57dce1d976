/**
 * @module container/membership/peer-entries
 * The `peers` option's entries as places to look for members: an origin is one member; `dns:<name>:<port>`
 * is every address the name resolves to (a Kubernetes headless Service answers with one address per ready
 * pod), asked again every `fleetResolveMs` so that pods that come and go are followed.
 */
import { lookup as dnsLookup } from 'node:dns/promises';

export type PeerEntry = { kind: 'url'; origin: string } | { kind: 'dns'; entry: string; name: string; port: number; scheme: 'http' | 'https' };

/** Addresses of a name (all families). Tests replace it; production uses getaddrinfo, as Kubernetes' resolv.conf expects. */
export type Lookup = (name: string) => Promise<string[]>;

export const systemLookup: Lookup = async (name) => (await dnsLookup(name, { all: true, verbatim: true })).map((a) => a.address);

/** Entries as `normalizeOptions` left them (origins, or dns:<name>:<port>[:http|https]). */
export function peerEntries(peers: readonly string[]): PeerEntry[] {
  return peers.map((p) => {
    const m = /^dns:([A-Za-z0-9.-]+):(\d{1,5})(?::(https?))?$/.exec(p);
    if (!m) return { kind: 'url', origin: p };
    return { kind: 'dns', entry: p, name: m[1]!, port: Number(m[2]), scheme: (m[3] as 'http' | 'https' | undefined) ?? 'http' };
  });
}

/** The origin to reach one resolved address of a dns entry at. */
export function addressOrigin(e: Extract<PeerEntry, { kind: 'dns' }>, address: string): string {
  return `${e.scheme}://${address.includes(':') ? `[${address}]` : address}:${e.port}`;
}
