/**
 * @module container/membership/metrics
 * The fleet in /metrics: members by state, each member's last reported load, and refused identities.
 * Labels are member URLs, at most MAX_MEMBERS of them.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { MemberView } from '../../protocol/index.js';

export function fleetMetrics(registry: Registry, members: () => MemberView[]): { refused: Counter<'peer'> } {
  const registers = [registry];
  new Gauge({
    name: 'keynode_fleet_members', help: 'Members of this fleet this container knows, by state (up, down, refused)', labelNames: ['state'], registers,
    collect() {
      this.reset();
      const by = { up: 0, down: 0, refused: 0 };
      for (const m of members()) by[m.state]++;
      for (const [state, n] of Object.entries(by)) this.set({ state }, n);
    },
  });
  const perPeer = (name: string, help: string, pick: (m: MemberView) => number | undefined) =>
    new Gauge({
      name, help, labelNames: ['peer'], registers,
      collect() {
        this.reset();
        for (const m of members()) {
          const v = pick(m);
          if (v !== undefined) this.set({ peer: m.url }, v);
        }
      },
    });
  perPeer('keynode_peer_up', '1 when the member answered the last load poll with the identity pinned for it', (m) => (m.state === 'up' ? 1 : 0));
  perPeer('keynode_peer_awake_nodes', 'Awake nodes a member reported', (m) => m.load?.awake);
  perPeer('keynode_peer_queued_evals', 'Evals waiting at a member, as it reported', (m) => m.load?.queued);
  perPeer('keynode_peer_nodes_left', 'Nodes a member can still hand out, as it reported', (m) => m.load?.nodesLeft);
  perPeer('keynode_peer_load_age_seconds', 'Age of the load report last believed from a member', (m) => (m.ageMs === undefined ? undefined : m.ageMs / 1000));
  const refused = new Counter({ name: 'keynode_peer_identity_refusals_total', help: 'Times a peer answered at a pinned URL with another container ID and was refused', labelNames: ['peer'], registers });
  return { refused };
}
