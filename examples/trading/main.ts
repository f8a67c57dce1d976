/**
 * Example: trading (seed 000): run untrusted customer code in a multi-tenant trading platform.
 *
 * Customers write trading strategies: JavaScript functions that get the latest price and answer BUY, SELL or
 * HOLD. The platform gives every customer a node of their own. The customer (with their own identity, listed on
 * the node's ACL) uploads their strategy's source into that node; on every tick the platform (the node's parent)
 * runs it there, with the price as an argument. A strategy can keep state (a moving average, say) in its node's
 * refs, which nobody else's strategy can see.
 *
 * The node's sandbox is strict: its own refs only, no contacts (it can reach no other node), a short time limit
 * and a small heap. Mallory's strategy is hostile: it reaches for `process`, tries to read Alice's node, and
 * loops forever. Each attempt fails on its own with a clear error code while Alice and Bob answer on every
 * tick.
 *
 * Run: npm run example -- trading
 */
import { connect, Identity, KeynodeError, Lifetime, type Client, type Ctx, type NodeHandle } from 'keynode';
import { check, run } from '../lib/env.js';

// Prices of the ticks this run replays (a real platform would take them from a market feed).
const PRICES = [10.0, 10.4, 9.7, 10.9, 9.4, 10.2];

// The strategies, as the customers wrote them: source text, `(ctx, price, tick) => 'BUY' | 'SELL' | 'HOLD'`.
// `ctx` is the customer's own node (ctx.ref, ctx.log, ...); whatever else the code tries is up to the sandbox.
const STRATEGIES: Record<string, string> = {
  // Buys below the moving average of the last 3 prices, sells above it; keeps the prices in a ref.
  alice: `async (ctx, price) => {
    const history = ctx.ref('history');
    const last = (await history.get()) ?? [];
    await history.set([...last, price].slice(-3));
    if (last.length === 0) return 'HOLD';
    const average = last.reduce((a, b) => a + b, 0) / last.length;
    ctx.log('price', price, 'average', average.toFixed(2));
    return price < average * 0.98 ? 'BUY' : price > average * 1.02 ? 'SELL' : 'HOLD';
  }`,
  // Fixed thresholds, like the seed's john and fred.
  bob: `(ctx, price) => (price > 10.5 ? 'SELL' : price < 9.5 ? 'BUY' : 'HOLD')`,
  // Hostile: a different attack on each tick. (Mallory learned Alice's node URL somehow; it is in her ref.)
  mallory: `async (ctx, price, tick) => {
    if (tick % 3 === 1) return process.env.HOME ? 'BUY' : 'SELL';        // the host's process: not there
    if (tick % 3 === 2) {                                                   // another customer's state
      const target = await ctx.ref('target').get();
      return ctx.at(target, (c) => c.ref('history').get());
    }
    for (;;) {}                                                              // hog the CPU forever
  }`,
};

// Runs inside a customer's node on every tick: loads the stored strategy and runs it with the price. It ships
// as source and closes over nothing; `eval` inside a node compiles in that node's sandbox.
const runStrategy = async (ctx: Ctx, price: number, tick: number) => {
  const source = await ctx.ref<string>('strategy').get();
  if (typeof source !== 'string') throw new Error('no strategy uploaded');
  const strategy = (0, eval)(`(${source})`) as (ctx: Ctx, price: number, tick: number) => unknown;
  const decision = await strategy(ctx, price, tick);
  if (decision !== 'BUY' && decision !== 'SELL' && decision !== 'HOLD') throw new TypeError(`not a decision: ${String(decision)}`);
  return decision;
};

// A clear, short reason for a failed strategy: keynode's code, plus the JavaScript error when the code threw.
function reason(e: unknown): string {
  if (!(e instanceof KeynodeError)) throw e;
  return e.code === 'ERR_USER' ? `ERR_USER (${e.remote?.name}: ${e.remote?.message})` : e.code;
}

interface Customer {
  name: string;
  client: Client;
  node: NodeHandle;
}

await run('trading', async ({ sites: [site] }) => {
  const { url, client: platform } = site!;

  // Sign up three customers: each has an identity of its own and gets a node the platform spawns for it.
  const customers: Customer[] = [];
  for (const name of Object.keys(STRATEGIES)) {
    const client = await connect(url, { identity: Identity.generate() });
    const node = await platform.spawn({
      lifetime: Lifetime.root(),
      sandbox: {
        refs: 'readwrite', // the node's own state (its strategy and whatever the strategy keeps)
        contacts: [], // no other node is reachable from its code
        timeoutMs: 500, // a tick's answer is due quickly; a runaway strategy is killed
        memoryMB: 32,
        spawn: false,
        log: true,
      },
      acl: [client.here.id], // the customer may send code to its node; the platform, as parent, always may
    });
    customers.push({ name, client, node });
    console.log(`${name}: node ${node.id.slice(0, 12)}…`);
  }
  const [alice, bob, mallory] = customers as [Customer, Customer, Customer];

  try {
    // Each customer uploads its strategy into its own node, with its own identity.
    for (const c of customers) {
      await c.client.at(c.node, (ctx, source: string) => ctx.ref('strategy').set(source), STRATEGIES[c.name]!);
    }
    await mallory.client.at(mallory.node, (ctx, target: string) => ctx.ref('target').set(target), alice.node.url);

    // Mallory's identity may not send code to Alice's node either.
    try {
      await mallory.client.at(alice.node, (ctx) => ctx.ref('strategy').get());
      check(false, "mallory's client read alice's node");
    } catch (e) {
      console.log(`mallory's client on alice's node: ${reason(e)}`);
      check(e instanceof KeynodeError && e.code === 'ERR_ACCESS_DENIED', 'a customer cannot eval on another customer\'s node');
    }

    // The market: on each tick, every strategy runs at once in its own node (its own process).
    const answered: Record<string, number> = { alice: 0, bob: 0, mallory: 0 };
    const failures: string[] = [];
    for (const [i, price] of PRICES.entries()) {
      const tick = i + 1;
      const results = await Promise.all(customers.map(async (c) => {
        try {
          const decision = await platform.at(c.node, runStrategy, price, tick);
          answered[c.name]!++;
          return `${c.name} ${decision}`;
        } catch (e) {
          failures.push(`${c.name}:${(e as KeynodeError).code}`);
          return `${c.name} ${reason(e)}`;
        }
      }));
      console.log(`tick ${tick} price ${price.toFixed(2)}: ${results.join(', ')}`);
    }

    // Bob changes his mind between sessions: he uploads a new strategy, which runs from the next tick on.
    await bob.client.at(bob.node, (ctx, source: string) => ctx.ref('strategy').set(source), `(ctx, price) => (price > 10 ? 'SELL' : 'BUY')`);
    console.log(`bob updated his strategy: ${await platform.at(bob.node, runStrategy, 10.6, PRICES.length + 1)} at 10.60`);

    // Alice's state is hers alone and intact; her log shows what her strategy saw.
    const history = await alice.client.at(alice.node, (ctx) => ctx.ref<number[]>('history').get());
    console.log(`alice's history: ${JSON.stringify(history)}`);
    const aliceLog = await platform.logs(alice.node);
    console.log(`alice's log: ${aliceLog.length} lines, last: ${aliceLog.at(-1)?.line}`);

    check(answered.alice === PRICES.length && answered.bob === PRICES.length, 'alice and bob answered on every tick');
    check(answered.mallory === 0, 'mallory never answered');
    check(failures.every((f) => f.startsWith('mallory:')), 'only mallory failed');
    for (const code of ['ERR_USER', 'ERR_SANDBOX', 'ERR_EVAL_TIMEOUT']) check(failures.includes(`mallory:${code}`), `mallory failed with ${code}`);
    check(JSON.stringify(history) === JSON.stringify(PRICES.slice(-3)), "alice's state holds her last three prices");
    console.log('every hostile attempt failed alone; alice and bob answered on every tick');
  } finally {
    for (const c of customers) {
      await platform.destroy(c.node).catch(() => {});
      await c.client.close();
    }
  }
});
