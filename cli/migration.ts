/**
 * @module cli/migration
 * `keynode move <node> --to <url>` and `keynode drain`: nodes leave this container for its peers (see the
 * README, "Fleets"). Both print for people by default and JSON with `--json`.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { DrainReport, MoveResult } from '../index.js';
import { connection, nodeArg, withClient, type ConnFlags } from './connection.js';
import { EXIT, json, out, pairs, say, table } from './output.js';

function concurrency(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError('--concurrency must be an integer from 1 to 64');
  return n;
}

function containerUrl(v: string): string {
  try {
    const u = new URL(v);
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.origin;
  } catch {
    // reported below
  }
  throw new InvalidArgumentError(`--to must be a container's URL (http(s)://host:port), got ${JSON.stringify(v.slice(0, 200))}`);
}

export function migrationCommands(program: Command): void {
  connection(program.command('move').argument('<node>', 'node ID or URL').description('Move a node (and every node under it) to a peer container; its old URL redirects there. Retrying a move that failed midway finishes it.'))
    .requiredOption('--to <url>', 'the container to move it to (one of its container\'s --peers)', containerUrl)
    .action((node: string, flags: ConnFlags & { to: string }) =>
      withClient(flags, async (client) => {
        const r: MoveResult = await client.move(nodeArg(node), flags.to);
        if (flags.json) json(r);
        else out(pairs([['id', r.id], ['url', r.url], ['from', r.from], ['to', r.to], ['nodes', String(r.nodes)], ['bytes', String(r.bytes)], ['time', `${r.ms} ms`]]));
      }, () => nodeArg(node)),
    );

  connection(program.command('drain').description("Move every node off the container to its peers (by room, in turn), refusing new spawns; then report. Exit 1 if any node could not move."))
    .option('--concurrency <n>', 'moves at once (default 8)', concurrency)
    .action((flags: ConnFlags & { concurrency?: number }) =>
      withClient(flags, async (client) => {
        const r: DrainReport = await client.drain(flags.concurrency === undefined ? {} : { concurrency: flags.concurrency });
        if (flags.json) json(r);
        else {
          out(pairs([['moved', `${r.moved} (${r.nodes} nodes with their subtrees)`], ['failed', String(r.failed.length)], ['ephemeral', `${r.ephemeral} (held by clients: they end with this container)`], ['time', `${r.ms} ms (${r.nodesPerSecond} nodes/s)`]]));
          out(table([['PEER', 'NODES'], ...Object.entries(r.peers).map(([p, n]) => [p, String(n)])]));
          for (const f of r.failed) say(`keynode: ${f.id} did not move: ${f.code}: ${f.message}`);
        }
        if (r.failed.length) process.exitCode = EXIT.failure;
      }),
    );
}
