/**
 * Example: functions (seed 001): "functions for platforms".
 *
 * A platform lets its tenants upload JavaScript functions and run them later by ID. Here the platform is this
 * program; each tenant gets a node of its own, where its functions are stored and run:
 *
 *   upload(tenant, source) → ID    the platform hashes the source (sha256, node:crypto) and stores it in the
 *                                  tenant's node under that ID: the same source always gets the same ID
 *   execute(tenant, ID, input)     the tenant runs the stored function in its node, with `input`
 *   logs(tenant, ID)               the lines that function logged (the node's ctx.log lines, tagged by ID)
 *
 * Tenants are isolated by keynode, not by the platform's bookkeeping: a tenant's identity is on the ACL of its
 * own node only, so it cannot execute or read another tenant's functions, and a function's node can reach no
 * other node. Uploads are node state, so they are still there after the container restarts.
 *
 * Run: npm run example -- functions
 */
import { createHash } from 'node:crypto';
import { connect, Identity, KeynodeError, Lifetime, type Client, type Ctx, type NodeHandle } from 'keynode';
import { check, run } from '../lib/env.js';

interface Tenant {
  name: string;
  /** The tenant's own program, signed by its own identity. */
  client: Client;
  /** The tenant's node, spawned by the platform. */
  node: NodeHandle;
}

// Runs in a tenant's node: stores a function's source under its ID. Only the platform uploads.
const store = (ctx: Ctx, id: string, source: string) => ctx.index<string>('functions').put(id, source);

// Runs in a tenant's node: loads the function by ID, compiles it (inside the node's sandbox) and calls it with
// the input and a `log` that tags each line with the function's ID.
const execute = async (ctx: Ctx, id: string, input: unknown) => {
  const source = await ctx.index<string>('functions').get(id);
  if (typeof source !== 'string') throw Object.assign(new Error(`no function ${id.slice(0, 12)}… here`), { code: 'NO_SUCH_FUNCTION' });
  const fn = (0, eval)(`(${source})`) as (input: unknown, tools: { log: (...args: unknown[]) => void }) => unknown;
  return fn(input, { log: (...args: unknown[]) => ctx.log(`[${id}]`, ...args) });
};

// What the tenants upload: plain functions of (input, { log }), as text.
const WORD_COUNT = `(text, { log }) => {
  const words = String(text).split(/\\s+/).filter(Boolean);
  log('counted', words.length, 'words');
  return words.length;
}`;
const INVOICE_TOTAL = `(lines, { log }) => {
  const total = lines.reduce((sum, l) => sum + l.qty * l.price, 0);
  log('invoice of', lines.length, 'lines:', total);
  return Math.round(total * 100) / 100;
}`;

function code(e: unknown): string {
  if (!(e instanceof KeynodeError)) throw e;
  return e.code === 'ERR_USER' ? `ERR_USER (${e.remote?.code ?? e.remote?.name}: ${e.remote?.message})` : e.code;
}

async function refused(what: string, attempt: Promise<unknown>): Promise<string> {
  try {
    await attempt;
  } catch (e) {
    console.log(`${what}: refused, ${code(e)}`);
    return (e as KeynodeError).code;
  }
  throw new Error(`check failed: ${what} was allowed`);
}

await run('functions', async ({ sites: [site] }) => {
  const { url } = site!;
  // The platform's client (site.client is replaced when the container restarts, so read it each time).
  const platform = () => site!.client;

  // The platform's API.
  const upload = async (tenant: Tenant, source: string): Promise<string> => {
    const id = createHash('sha256').update(source).digest('hex');
    await platform().at(tenant.node, store, id, source);
    return id;
  };
  const logsOf = async (tenant: Tenant, id: string): Promise<string[]> =>
    (await platform().logs(tenant.node)).map((l) => l.line).filter((line) => line.startsWith(`[${id}] `)).map((line) => line.slice(id.length + 3));

  // Two tenants, each with its own identity and its own node.
  const tenants: Tenant[] = [];
  for (const name of ['acme', 'globex']) {
    const client = await connect(url, { identity: Identity.generate() });
    const node = await platform().spawn({
      lifetime: Lifetime.root(), // kept until the platform destroys it, across restarts
      sandbox: { refs: 'readwrite', contacts: [], timeoutMs: 2000, memoryMB: 64, log: true },
      acl: [client.here.id], // the tenant itself; the platform is the parent
    });
    tenants.push({ name, client, node });
    console.log(`tenant ${name}: node ${node.id.slice(0, 12)}…`);
  }
  const [acme, globex] = tenants as [Tenant, Tenant];

  try {
    // Upload → ID (the content hash: uploading the same source again gives the same ID).
    const wordCount = await upload(acme, WORD_COUNT);
    const invoice = await upload(globex, INVOICE_TOTAL);
    console.log(`acme uploaded word-count: ${wordCount}`);
    console.log(`globex uploaded invoice-total: ${invoice}`);
    check(wordCount === (await upload(acme, WORD_COUNT)), 'the same source gets the same ID');
    check(/^[0-9a-f]{64}$/.test(wordCount), 'the ID is a sha256');

    // Execute by ID with input: each tenant runs its own functions in its own node.
    const words = await acme.client.at(acme.node, execute, wordCount, 'functions for platforms everywhere');
    console.log(`acme executed ${wordCount.slice(0, 12)}…: ${words}`);
    check(words === 4, 'word-count counted 4 words');
    const total = await globex.client.at(globex.node, execute, invoice, [{ qty: 3, price: 2.5 }, { qty: 1, price: 10.25 }]);
    console.log(`globex executed ${invoice.slice(0, 12)}…: ${total}`);
    check(total === 17.75, 'invoice-total is 17.75');

    // That function's logs.
    const wordLogs = await logsOf(acme, wordCount);
    console.log(`logs of ${wordCount.slice(0, 12)}…: ${JSON.stringify(wordLogs)}`);
    check(wordLogs.includes('counted 4 words'), 'the function logged its count');

    // Isolation: globex cannot execute or read acme's functions, whichever way it tries.
    const codes = [
      await refused("globex executes acme's function on acme's node", globex.client.at(acme.node, execute, wordCount, 'x')),
      await refused("globex reads acme's function list", globex.client.at(acme.node, (ctx) => ctx.index('functions').entries())),
      await refused("globex executes acme's function ID on its own node", globex.client.at(globex.node, execute, wordCount, 'x')),
      await refused(
        "globex's code reaches for acme's node from its own",
        globex.client.at(globex.node, (ctx, other: string) => ctx.at(other, (c) => c.index('functions').entries()), acme.node.url),
      ),
    ];
    check(codes.join() === 'ERR_ACCESS_DENIED,ERR_ACCESS_DENIED,ERR_USER,ERR_SANDBOX', 'every cross-tenant attempt was refused');

    // Uploads survive a restart of the container: they are node state in its store.
    if (site!.restart) {
      await site!.restart();
      console.log('container restarted');
      const again = await acme.client.at(acme.node, execute, wordCount, 'still here after a restart');
      console.log(`acme executed ${wordCount.slice(0, 12)}… after the restart: ${again}`);
      check(again === 5, 'the uploaded function ran after the restart');
      const after = await logsOf(acme, wordCount);
      console.log(`logs of ${wordCount.slice(0, 12)}… after the restart: ${JSON.stringify(after)}`);
      check(after.at(-1) === 'counted 5 words', 'its logs carry on');
    } else {
      console.log('restart step skipped: this example does not own the container (KEYNODE_URL is set)');
    }
  } finally {
    for (const t of tenants) {
      await platform().destroy(t.node).catch(() => {});
      await t.client.close();
    }
  }
});
