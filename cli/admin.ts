/**
 * @module cli/admin
 * Admin commands against a running container, signed with the operator identity (or any identity: the
 * container decides what each may do).
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { connect, Identity, isKeynodeError, type Client, type NodeInfo } from '../index.js';

interface ConnFlags {
  url: string;
  identity: string;
}

function connection(cmd: Command): Command {
  return cmd
    .addOption(new Option('--url <url>', 'container URL').env('KEYNODE_URL').default('http://127.0.0.1:7070'))
    .addOption(new Option('--identity <file>', 'identity key file').env('KEYNODE_IDENTITY').default('./.keynode/operator.key'));
}

async function withClient<T>(flags: ConnFlags, f: (client: Client) => Promise<T>): Promise<void> {
  let client: Client | undefined;
  try {
    client = await connect(flags.url, { identity: await Identity.load(flags.identity) });
    await f(client);
  } catch (e) {
    process.stderr.write(`keynode: ${isKeynodeError(e) ? `${e.code}: ${e.message}` : (e as Error).message}\n`);
    const code = isKeynodeError(e) ? e.code : undefined;
    process.exitCode =
      code === 'ERR_NODE_NOT_FOUND' || code === 'ERR_NODE_DESTROYED' ? 3
      : code === 'ERR_ACCESS_DENIED' ? 4
      : code === 'ERR_BAD_NODE_ID' || code === 'ERR_BAD_URL' || code === 'ERR_BAD_POLICY' ? 2
      : 1;
  } finally {
    await client?.close();
  }
}

function ago(ms: number | undefined): string {
  if (ms === undefined) return '-';
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

const out = (s: string) => process.stdout.write(s);

function count(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${flag} must be a non-negative integer`);
    return n;
  };
}

function mib(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${flag} must be a non-negative number of MiB (fractions allowed)`);
    return n;
  };
}

/** Bytes for people: 512B, 3.4KB, 12.0MB (powers of 1024, as storageMB counts). */
function bytes(n: number | undefined): string {
  if (n === undefined) return '-';
  if (n < 1024) return `${n}B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)}KB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)}MB`;
  return `${(n / 1024 ** 3).toFixed(1)}GB`;
}

export function adminCommands(program: Command): void {
  connection(program.command('ls').description('List nodes: id, status, pid, uptime, lifetime, memory, storage (its subtree\'s), last activity, parent.'))
    .option('--json', 'one JSON object per line')
    .option('-q, --quiet', 'node IDs only')
    .action((flags: ConnFlags & { json?: boolean; quiet?: boolean }) =>
      withClient(flags, async (client) => {
        const rows: string[][] = [['ID', 'STATUS', 'PID', 'UPTIME', 'LIFETIME', 'MEMORY', 'STORAGE', 'LAST ACTIVITY', 'PARENT']];
        let after: string | undefined;
        for (;;) {
          const page = (await client.request('list', { after, limit: 1000 })) as { nodes: NodeInfo[] };
          for (const n of page.nodes) {
            if (flags.quiet) out(`${n.id}\n`);
            else if (flags.json) out(`${JSON.stringify(n)}\n`);
            else rows.push([n.id, n.status, n.pid ? String(n.pid) : '-', ago(n.uptimeMs), (n.lifetime as { kind: string }).kind, n.memoryMB ? `${n.memoryMB}MB` : '-', bytes(n.storageBytes), n.lastActivity ? `${ago(Date.now() - n.lastActivity)} ago` : '-', n.parent]);
          }
          if (page.nodes.length < 1000) break;
          after = page.nodes.at(-1)!.id;
        }
        if (!flags.quiet && !flags.json) out(table(rows));
      }),
    );

  connection(program.command('describe').argument('<node>', 'node ID or URL').description('Status and policies of a node, as JSON.')).action((node: string, flags: ConnFlags) =>
    withClient(flags, async (client) => out(`${JSON.stringify(await client.describe(node), null, 2)}\n`)),
  );

  connection(program.command('logs').argument('<node>', 'node ID or URL').description("A node's log lines."))
    .option('-f, --follow', 'keep printing new lines')
    .action((node: string, flags: ConnFlags & { follow?: boolean }) =>
      withClient(flags, async (client) => {
        let after = 0;
        for (;;) {
          const lines = await client.logs(node, { after, wait: flags.follow ? 30_000 : 0 });
          for (const l of lines) out(`${new Date(l.ts).toISOString()} ${l.line}\n`);
          if (lines.length) after = lines.at(-1)!.seq;
          if (!flags.follow) break;
        }
      }),
    );

  connection(program.command('destroy').argument('<node>', 'node ID or URL').description('Destroy a node (operator force-destroy).')).action((node: string, flags: ConnFlags) =>
    withClient(flags, async (client) => {
      await client.request('forceDestroy', { node: client.node(node).id });
      process.stderr.write(`destroyed ${node}\n`);
    }),
  );

  connection(program.command('grant').argument('<principal>', 'principal ID').description('Grant a principal a budget to spawn top-level nodes.'))
    .requiredOption('--nodes <n>', 'max nodes', count('--nodes'))
    .requiredOption('--awake <n>', 'max awake at once', count('--awake'))
    .requiredOption('--memory <mb>', 'max memory of awake nodes (MB)', count('--memory'))
    .option('--storage <mb>', 'max disk its nodes may fill (MiB, fractions allowed; default: the container\'s capacity)', mib('--storage'))
    .action((principal: string, flags: ConnFlags & { nodes: number; awake: number; memory: number; storage?: number }) =>
      withClient(flags, async (client) => {
        const budget = { maxNodes: flags.nodes, maxAwake: flags.awake, memoryMB: flags.memory, ...(flags.storage !== undefined ? { storageMB: flags.storage } : {}) };
        out(`${JSON.stringify(await client.request('grant', { principal, budget }), null, 2)}\n`);
      }),
    );

  connection(program.command('budget').argument('[principal]', 'principal ID (default: yours)').description("A principal's budget: limits and use (nodes, awake, memoryMB, storageMB and storageBytes).")).action((principal: string | undefined, flags: ConnFlags) =>
    withClient(flags, async (client) => out(`${JSON.stringify(await client.request('budget', principal ? { principal } : {}), null, 2)}\n`)),
  );

  connection(program.command('stats').description('Container counters.')).action((flags: ConnFlags) =>
    withClient(flags, async (client) => out(`${JSON.stringify(await client.request('stats', {}), null, 2)}\n`)),
  );
}
