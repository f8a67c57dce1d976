/**
 * @module cli/peers
 * `keynode peers`: the other members of the container's fleet as it sees them (state, container ID, last
 * load and its age, why one is down or refused), from its authenticated `load` reply.
 */
import type { Command } from 'commander';
import type { LoadReport } from '../index.js';
import { connection, withClient, type ConnFlags } from './connection.js';
import { ago, json, out, table } from './output.js';

function text(r: LoadReport): string {
  const self = `this container ${r.url} (${r.containerId}): ${r.awake}/${r.maxAwake} awake, ${r.queued} queued, ${r.memoryMB}/${r.maxMemoryMB} MB, ${r.nodesLeft} nodes left\n`;
  if (!r.members.length) return `${self}no peers (start it with --peers to make it part of a fleet)\n`;
  const rows = [['URL', 'STATE', 'CONTAINER', 'AWAKE', 'QUEUED', 'MEMORY MB', 'NODES LEFT', 'AGE', 'NOTE']];
  for (const m of r.members) {
    const l = m.load;
    rows.push([
      m.url, m.state, m.containerId ? `${m.containerId.slice(0, 12)}…` : '-',
      l ? `${l.awake}/${l.maxAwake}` : '-', l ? String(l.queued) : '-', l ? `${l.memoryMB}/${l.maxMemoryMB}` : '-', l ? String(l.nodesLeft) : '-',
      ago(m.ageMs), m.error ?? (m.via ? `via ${m.via}` : ''),
    ]);
  }
  return self + table(rows);
}

export function peersCommand(program: Command): void {
  connection(program.command('peers').description("The other containers of this container's fleet: state, identity, load.")).action((flags: ConnFlags) =>
    withClient(flags, async (client) => {
      const { members, ...self } = await client.load();
      if (flags.json) json({ self, members });
      else out(text({ ...self, members }));
    }),
  );
}
