/**
 * Example: checker (seed 002): users write checks against named datasets; failures raise alarms.
 *
 * The host (this program) keeps three nodes of its own:
 *
 *   datasets  the named datasets (an index), and which datasets each check declared it reads
 *   board     each check's state, green or red
 *   alarms    the alarm queue (an index); a separate program, the on-call drainer, empties it
 *
 * Each user check runs in a node of its own that can do nothing but what the host granted: the capabilities
 * `dataset(name)`, `ok(msg)` and `fail(msg)`, each bound to one function on one of the host's nodes. No refs,
 * no contacts, no spawning, a short time limit. The capability functions see which check calls them
 * (`ctx.caller`), so `dataset` serves a check only the datasets it declared, and `ok`/`fail` can only set the
 * caller's own state. `fail` also appends an alarm to the queue.
 *
 * The checks run on a schedule: here three rounds, with the data changing between rounds.
 *
 * Run: npm run example -- checker
 */
import { connect, Identity, KeynodeError, Lifetime, type Ctx, type NodeHandle, type SandboxOptions } from 'keynode';
import { check, run } from '../lib/env.js';

// ---- What runs on the host's nodes (shipped as source: these close over nothing) ----

/** On `datasets`: the `dataset(name)` capability. Serves only what the calling check declared. */
const readDataset = async (ctx: Ctx, name: string) => {
  const declared = (await ctx.index<string[]>('declared').get(ctx.caller)) ?? [];
  if (!declared.includes(name)) {
    throw Object.assign(new Error(`this check did not declare dataset '${name}'`), { code: 'NOT_DECLARED' });
  }
  return ctx.index('datasets').get(name);
};

/** On `board`: the `ok(msg)` capability. The caller's own state only. */
const markGreen = async (ctx: Ctx, msg: string) => {
  const name = await ctx.index<string>('names').get(ctx.caller);
  if (!name) throw new Error('not a registered check');
  await ctx.index('state').put(name, { state: 'green', msg: String(msg) });
};

/** On `alarms`: appends to the alarm queue, in order. */
const appendAlarm = async (ctx: Ctx, check: string, message: string) => {
  const seq = ((await ctx.ref<number>('seq').get()) ?? 0) + 1;
  await ctx.ref('seq').set(seq);
  await ctx.index('queue').put(String(seq).padStart(10, '0'), { check, message });
};

/** On `board`: the `fail(msg)` capability. Marks the caller red and raises an alarm (the board's own capability). */
const markRed = async (ctx: Ctx, msg: string) => {
  const name = await ctx.index<string>('names').get(ctx.caller);
  if (!name) throw new Error('not a registered check');
  await ctx.index('state').put(name, { state: 'red', msg: String(msg) });
  await ctx.caps.raise(name, String(msg));
};

/** On a check node: runs the user's check source with its capabilities (compiled inside the node's sandbox). */
const runCheck = async (ctx: Ctx, source: string) => {
  const userCheck = (0, eval)(`(${source})`) as (caps: Ctx['caps'], ctx: Ctx) => unknown;
  await userCheck(ctx.caps, ctx);
};

// ---- The checks, as users wrote them: `async ({ dataset, ok, fail }, ctx) => ...` ----

interface UserCheck {
  name: string;
  datasets: string[];
  source: string;
}

const CHECKS: UserCheck[] = [
  {
    name: 'few-missing-emails',
    datasets: ['users_with_email_null'],
    source: `async ({ dataset, ok, fail }) => {
      const users = await dataset('users_with_email_null');
      if (users.length < 3) await ok(users.length + ' users without email');
      else await fail('there should be fewer than 3 users without email, found ' + users.length);
    }`,
  },
  {
    name: 'orders-have-totals',
    datasets: ['orders'],
    source: `async ({ dataset, ok, fail }) => {
      const bad = (await dataset('orders')).filter((o) => !(o.total > 0));
      if (bad.length === 0) await ok('every order has a total');
      else await fail('orders without a total: ' + bad.map((o) => o.id).join(', '));
    }`,
  },
  {
    // Declares only 'orders', then asks for the salaries.
    name: 'peek-salaries',
    datasets: ['orders'],
    source: `async ({ dataset, ok }) => {
      const salaries = await dataset('salaries');
      await ok('read ' + salaries.length + ' salaries');
    }`,
  },
  {
    // Goes around the capabilities: straight to the host's datasets node (its URL is no secret).
    name: 'peek-around',
    datasets: ['orders'],
    source: `async ({ ok }, ctx) => {
      const all = await ctx.at(DATASETS_URL, (c) => c.index('datasets').entries());
      await ok('read ' + all.length + ' datasets');
    }`,
  },
];

// The rounds of the schedule: what changes in the data before each round.
const ROUNDS: { change: string; datasets: Record<string, unknown> }[] = [
  {
    change: 'initial data',
    datasets: {
      users_with_email_null: ['ana', 'bo'],
      orders: [{ id: 'o1', total: 12.5 }, { id: 'o2', total: 7 }],
      salaries: [{ who: 'ana', amount: 100000 }],
    },
  },
  {
    change: 'two more users lost their email; order o3 has no total',
    datasets: {
      users_with_email_null: ['ana', 'bo', 'cy', 'di'],
      orders: [{ id: 'o1', total: 12.5 }, { id: 'o2', total: 7 }, { id: 'o3', total: 0 }],
    },
  },
  {
    change: 'emails fixed; o3 still has no total',
    datasets: { users_with_email_null: [] },
  },
];

function describeError(e: unknown): string {
  if (!(e instanceof KeynodeError)) throw e;
  return e.code === 'ERR_USER' ? `ERR_USER (${e.remote?.code ?? e.remote?.name}: ${e.remote?.message})` : e.code;
}

await run('checker', async ({ sites: [site] }) => {
  const { url, client: host } = site!;
  // Every node here: reaches no other node, answers within 2 s, small heap, no logs.
  const strict: SandboxOptions = { contacts: [], timeoutMs: 2000, memoryMB: 32, log: false };

  // The on-call program: its own identity, listed on the alarm node's ACL (and nowhere else).
  const oncall = await connect(url, { identity: Identity.generate() });
  const owned: NodeHandle[] = [];
  const spawn: typeof host.spawn = async (options) => {
    const node = await host.spawn(options);
    owned.push(node);
    return node;
  };

  try {
    // The host's nodes.
    const datasets = await spawn({ lifetime: Lifetime.root(), sandbox: { ...strict, refs: 'readwrite' } });
    const alarms = await spawn({ lifetime: Lifetime.root(), sandbox: { ...strict, refs: 'readwrite' }, acl: [oncall.here.id] });
    // The board itself holds one capability: `raise`, which appends to the alarm queue.
    const board = await spawn({
      lifetime: Lifetime.root(),
      sandbox: { ...strict, refs: 'readwrite', capabilities: { raise: { node: alarms, fn: appendAlarm } } },
    });

    // One node per check, granted exactly three capabilities and nothing else.
    const checks: { check: UserCheck; node: NodeHandle }[] = [];
    for (const c of CHECKS) {
      const node = await spawn({
        lifetime: Lifetime.root(),
        sandbox: {
          ...strict,
          refs: 'none',
          capabilities: {
            dataset: { node: datasets, fn: readDataset },
            ok: { node: board, fn: markGreen },
            fail: { node: board, fn: markRed },
          },
        },
        acl: [], // only the host (its parent) runs it
      });
      // The host records what the check declared, and its name, under the check node's ID (ctx.caller).
      await host.at(datasets, (ctx, id: string, names: string[]) => ctx.index('declared').put(id, names), node.id, c.datasets);
      await host.at(board, (ctx, id: string, name: string) => ctx.index('names').put(id, name), node.id, c.name);
      // (The author of 'peek-around' learned the datasets node's URL, which is no secret: it is in the check's text.)
      checks.push({ check: { ...c, source: c.source.replace('DATASETS_URL', JSON.stringify(datasets.url)) }, node });
    }
    const granted = await host.at(checks[0]!.node, (ctx) => Object.keys(ctx.caps));
    console.log(`${checks.length} checks, each in its own node with capabilities: ${granted.join(', ')}`);

    const history: Record<string, string[]> = {};
    const drained: string[] = [];
    for (const [i, round] of ROUNDS.entries()) {
      // The data changes between rounds.
      await host.at(datasets, async (ctx, changed: Record<string, unknown>) => {
        for (const [name, rows] of Object.entries(changed)) await ctx.index('datasets').put(name, rows);
      }, round.datasets);
      console.log(`round ${i + 1}: ${round.change}`);

      // Run every check. One that throws (or is refused by the sandbox) is red too, with the error as its alarm.
      for (const { check: c, node } of checks) {
        try {
          await host.at(node, runCheck, c.source);
        } catch (e) {
          const why = `errored: ${describeError(e)}`;
          await host.at(board, async (ctx, name: string, msg: string) => {
            await ctx.index('state').put(name, { state: 'red', msg });
            await ctx.caps.raise(name, msg);
          }, c.name, why);
        }
      }

      // The board: green or red, kept by the host.
      const states = await host.at(board, (ctx) => ctx.index<{ state: string; msg: string }>('state').entries());
      for (const [name, { state, msg }] of states) {
        console.log(`  ${name}: ${state} (${msg})`);
        (history[name] ??= []).push(state);
      }

      // The on-call program drains the alarm queue with its own identity.
      const batch = await oncall.at(alarms, async (ctx) => {
        const queue = ctx.index<{ check: string; message: string }>('queue');
        const items = await queue.entries();
        for (const [key] of items) await queue.delete(key);
        return items.map(([, v]) => v);
      });
      for (const a of batch) {
        console.log(`  alarm drained by on-call: [${a.check}] ${a.message}`);
        drained.push(`${i + 1}:${a.check}`);
      }
    }

    // The on-call program can drain alarms, and do nothing else: not read the datasets, not run a check.
    for (const [what, node] of [['datasets', datasets], ['a check', checks[0]!.node]] as const) {
      try {
        await oncall.at(node, (ctx) => ctx.index('datasets').entries());
        check(false, `on-call reached ${what}`);
      } catch (e) {
        console.log(`on-call on ${what}: ${describeError(e)}`);
        check(e instanceof KeynodeError && e.code === 'ERR_ACCESS_DENIED', `on-call cannot reach ${what}`);
      }
    }

    console.log(`history: ${JSON.stringify(history)}`);
    check(history['few-missing-emails']?.join() === 'green,red,green', 'few-missing-emails went green, red, green');
    check(history['orders-have-totals']?.join() === 'green,red,red', 'orders-have-totals went green, red, red');
    check(history['peek-salaries']?.join() === 'red,red,red', 'peek-salaries was refused every round');
    check(history['peek-around']?.join() === 'red,red,red', 'peek-around was refused every round');
    check(drained.includes('2:few-missing-emails') && !drained.includes('1:few-missing-emails') && !drained.includes('3:few-missing-emails'), 'the email alarm came in round 2 only');
    check(drained.filter((d) => d.endsWith(':orders-have-totals')).join() === '2:orders-have-totals,3:orders-have-totals', 'the orders alarm came in rounds 2 and 3');
  } finally {
    for (const node of owned.reverse()) await host.destroy(node).catch(() => {});
    await oncall.close();
  }
});
