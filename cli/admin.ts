/**
 * @module cli/admin
 * Admin commands against a running container, signed with the operator identity (or any identity: the
 * container decides what each may do). Each prints for people by default and JSON with `--json`.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { isKeynodeError, isNodeId, KeynodeError, type Client, type NodeInfo } from '../index.js';
import { connection, nodeArg, withClient, type ConnFlags } from './connection.js';
import { ago, json, out, pairs, say, table } from './output.js';

function count(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${flag} must be a non-negative integer`);
    return n;
  };
}

function principalArg(value: string): void {
  const text = String(value); // isNodeId narrows `value` itself to never when it fails
  if (!isNodeId(value)) throw new KeynodeError('ERR_BAD_NODE_ID', `${JSON.stringify(text.slice(0, 80))} is not a principal ID (52 lowercase base32 characters, as \`keynode identity show\` prints)`);
}

interface Budget {
  principal: string;
  limits: Record<string, number>;
  used: Record<string, number>;
}

/** Limits and use side by side, for whatever dimensions the container reports (maxNodes ↔ nodes, memoryMB ↔ memoryMB). */
function budgetText(b: Budget): string {
  const rows = [['', 'LIMIT', 'USED']];
  for (const [k, limit] of Object.entries(b.limits)) {
    const usedKey = k.startsWith('max') ? k[3]!.toLowerCase() + k.slice(4) : k;
    rows.push([k, String(limit), String(b.used[usedKey] ?? '-')]);
  }
  return `principal ${b.principal}\n${table(rows)}`;
}

function describeText(n: NodeInfo): string {
  const running = n.pid ? ` (pid ${n.pid}, up ${ago(n.uptimeMs)}, ${n.memoryMB} MB)` : '';
  return pairs([
    ['id', n.id],
    ['url', n.url],
    ['status', `${n.status}${running}`],
    ['lifetime', n.lifetime],
    ['parent', n.parent],
    ['created', new Date(n.createdAt).toISOString()],
    ['last activity', n.lastActivity ? `${new Date(n.lastActivity).toISOString()} (${ago(Date.now() - n.lastActivity)} ago)` : undefined],
    ['acl', n.acl.length ? n.acl.join(', ') : '(parent and ancestors only)'],
    ['sandbox', n.sandbox],
    ['budget', n.budget],
  ]);
}

const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10_000;
/** Failures after which following a log is worth trying again: the container went away or is restarting. */
const TRANSIENT = new Set(['ERR_UNAVAILABLE', 'ERR_OVERLOADED', 'ERR_CLOSED', 'ERR_INTERNAL']);

async function follow(client: Client, node: string, flags: ConnFlags & { follow?: boolean }): Promise<void> {
  let after = 0;
  let delay = RETRY_FIRST_MS;
  let lost = false;
  for (;;) {
    let lines: { seq: number; ts: number; line: string }[];
    try {
      lines = await client.logs(node, { after, wait: flags.follow ? 25_000 : 0 });
    } catch (e) {
      // A container starting up answers before it can authenticate anything: for a read, its word is enough to wait.
      const code = isKeynodeError(e) ? (e.code === 'ERR_BAD_REPLY' ? (e as { claimed?: string }).claimed : e.code) : undefined;
      if (!flags.follow || !isKeynodeError(e) || code === undefined || !TRANSIENT.has(code)) throw e;
      if (!lost) say(`keynode: lost the container at ${client.url} (${e.code}: ${e.message}); reconnecting with backoff`);
      lost = true;
      say(`keynode: retrying in ${(delay / 1000).toFixed(1)}s`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(RETRY_MAX_MS, delay * 2);
      continue;
    }
    if (lost) say(`keynode: reconnected to ${client.url}; following again`);
    lost = false;
    delay = RETRY_FIRST_MS;
    for (const l of lines) out(flags.json ? `${JSON.stringify(l)}\n` : `${new Date(l.ts).toISOString()} ${l.line}\n`);
    if (lines.length) after = lines.at(-1)!.seq;
    if (!flags.follow) return;
  }
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
    .option('-q, --quiet', 'node IDs only, one per line')
    .action((flags: ConnFlags & { quiet?: boolean }) =>
      withClient(flags, async (client) => {
        const rows: string[][] = [['ID', 'STATUS', 'PID', 'UPTIME', 'LIFETIME', 'MEMORY', 'STORAGE', 'LAST ACTIVITY', 'PARENT']];
        let after: string | undefined;
        let first = true;
        // A JSON array written as pages arrive: a container with millions of nodes is never held in memory.
        if (flags.json && !flags.quiet) out('[');
        for (;;) {
          const page = (await client.request('list', { after, limit: 1000 })) as { nodes: NodeInfo[] };
          for (const n of page.nodes) {
            if (flags.quiet) out(`${n.id}\n`);
            else if (flags.json) {
              out(`${first ? '\n' : ',\n'}${JSON.stringify(n)}`);
              first = false;
            } else rows.push([n.id, n.status, n.pid ? String(n.pid) : '-', ago(n.uptimeMs), (n.lifetime as { kind: string }).kind, n.memoryMB ? `${n.memoryMB}MB` : '-', bytes(n.storageBytes), n.lastActivity ? `${ago(Date.now() - n.lastActivity)} ago` : '-', n.parent]);
          }
          if (page.nodes.length < 1000) break;
          after = page.nodes.at(-1)!.id;
        }
        if (flags.quiet) return;
        if (flags.json) out(first ? ']\n' : '\n]\n');
        else out(table(rows));
      }),
    );

  connection(program.command('describe').argument('<node>', 'node ID or URL').description('Status and policies of a node.')).action((node: string, flags: ConnFlags) =>
    withClient(flags, async (client) => {
      const info = await client.describe(nodeArg(node));
      if (flags.json) json(info);
      else out(describeText(info));
    }, () => nodeArg(node)),
  );

  connection(program.command('logs').argument('<node>', 'node ID or URL').description("A node's log lines (--json: one JSON object per line, { seq, ts, line }, since it can follow)."))
    .option('-f, --follow', 'keep printing new lines; reconnects with backoff when the container restarts')
    .action((node: string, flags: ConnFlags & { follow?: boolean }) => withClient(flags, (client) => follow(client, nodeArg(node), flags), () => nodeArg(node)));

  connection(program.command('destroy').argument('<node>', 'node ID or URL').description('Destroy a node (operator force-destroy).')).action((node: string, flags: ConnFlags) =>
    withClient(flags, async (client) => {
      const id = client.node(nodeArg(node)).id;
      await client.request('forceDestroy', { node: id });
      if (flags.json) json({ destroyed: id });
      else say(`destroyed ${node}`);
    }, () => nodeArg(node)),
  );

  connection(program.command('grant').argument('<principal>', 'principal ID').description('Grant a principal a budget to spawn top-level nodes.'))
    .requiredOption('--nodes <n>', 'max nodes', count('--nodes'))
    .requiredOption('--awake <n>', 'max awake at once', count('--awake'))
    .requiredOption('--memory <mb>', 'max memory of awake nodes (MB)', count('--memory'))
    .option('--storage <mb>', 'max disk its nodes may fill (MiB, fractions allowed; default: the container\'s capacity)', mib('--storage'))
    .action((principal: string, flags: ConnFlags & { nodes: number; awake: number; memory: number; storage?: number }) =>
      withClient(flags, async (client) => {
        const report = (await client.request('grant', { principal, budget: { maxNodes: flags.nodes, maxAwake: flags.awake, memoryMB: flags.memory, ...(flags.storage !== undefined ? { storageMB: flags.storage } : {}) } })) as Budget;
        if (flags.json) json(report);
        else out(budgetText(report));
      }, () => principalArg(principal)),
    );

  connection(program.command('budget').argument('[principal]', 'principal ID (default: yours)').description("A principal's budget: limits and use (zero limits when it has no grant).")).action((principal: string | undefined, flags: ConnFlags) =>
    withClient(flags, async (client) => {
      const report = (await client.request('budget', principal ? { principal } : {})) as Budget;
      if (flags.json) json(report);
      else out(budgetText(report));
    }, () => principal === undefined || principalArg(principal)),
  );

  connection(program.command('stats').description('Container counters.')).action((flags: ConnFlags) =>
    withClient(flags, async (client) => {
      const stats = (await client.request('stats', {})) as Record<string, number>;
      if (flags.json) json(stats);
      else out(pairs(Object.entries(stats)));
    }),
  );
}
