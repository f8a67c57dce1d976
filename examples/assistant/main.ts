/**
 * Assistant (seed 004, CAF): a long-lived "Cloud Assistant" per user: one Root node that holds the user's state
 * and serves the user's devices (sessions).
 *
 *  - It survives crashes and restarts: its state lives in the node's refs and indexes, not in its process.
 *  - A request that fails rolls back: a node's writes commit only when the eval returns, so a request that
 *    updates state and then throws leaves the state, and its queued notifications, as they were.
 *  - Requests are processed exactly once even when the client retries: each carries an idempotency key, and the
 *    assistant remembers key → result in an index written in the same eval (the same atomic commit) as the
 *    state change. A retry of a request that committed gets the remembered result; one that did not commit
 *    (its worker crashed) simply runs.
 *  - Notifications are queued per session (an index keyed session/sequence) until that session reads them;
 *    reading drains its queue only.
 *
 * Run: npm run example -- assistant
 */
import { connect, Identity, KeynodeError, Lifetime, type Client, type Ctx, type NodeHandle } from 'keynode';
import { check, run } from '../lib/env.js';

type Op = { kind: 'topUp'; amount: number } | { kind: 'buy'; item: string; price: number; slowMs?: number };
interface Result {
  credit: number;
  orders: string[];
  replayed: boolean;
}

// Functions travel to the node as source, so each one is self-contained: it closes over nothing.

/** The assistant's request handler: runs on the assistant node, one request at a time. */
const request = async (ctx: Ctx, session: string, key: string, op: Op): Promise<Result> => {
  // Exactly once: a key we have seen means this request already committed; answer as we did then.
  const done = ctx.index<Omit<Result, 'replayed'>>('done');
  const earlier = await done.get(key);
  if (earlier) return { ...earlier, replayed: true };

  const state = ctx.ref<{ credit: number; orders: string[] }>('state');
  const s = (await state.get()) ?? { credit: 0, orders: [] };
  let note: string;
  if (op.kind === 'topUp') {
    s.credit += op.amount;
    note = `credit +${op.amount}`;
  } else {
    s.credit -= op.price;
    s.orders.push(op.item);
    note = `ordered ${op.item}`;
  }
  await state.set(s);

  // Notify every open session: one queue per session, keyed session/sequence so entries() reads it in order.
  const seqRef = ctx.ref<number>('seq');
  const seq = ((await seqRef.get()) ?? 0) + 1;
  await seqRef.set(seq);
  for (const [name] of await ctx.index('sessions').entries()) {
    await ctx.index('outbox').put(`${name}/${String(seq).padStart(10, '0')}`, `${note} (from ${session})`);
  }

  // The check comes after the writes on purpose: throwing now discards all of them.
  if (s.credit < 0) throw new RangeError(`not enough credit: ${note}`);
  // A slow request (say, a payment provider), so the example can lose its response or crash its worker mid-way.
  if (op.kind === 'buy' && op.slowMs) for (const end = Date.now() + op.slowMs; Date.now() < end; );

  await done.put(key, { credit: s.credit, orders: s.orders });
  return { credit: s.credit, orders: s.orders, replayed: false };
};

/** A device opens a session: from now on it gets its own notification queue. */
const openSession = (ctx: Ctx, session: string) => ctx.index('sessions').put(session, true);

/** A session reads its notifications; reading drains them (in the same atomic commit). */
const readNotifications = async (ctx: Ctx, session: string) => {
  const outbox = ctx.index<string>('outbox');
  const queued = await outbox.entries({ prefix: `${session}/` });
  for (const [k] of queued) await outbox.delete(k);
  return queued.map(([, note]) => note);
};

const peek = (ctx: Ctx) => ctx.ref<{ credit: number; orders: string[] }>('state').get();

/** Polls until `ok` (the example watches its node through `describe`, an operator's view). */
async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 10_000; Date.now() < end; await new Promise((r) => setTimeout(r, 10))) if (await ok()) return;
  throw new Error(`timed out waiting until ${what}`);
}

function describeError(e: unknown): string {
  if (!(e instanceof KeynodeError)) throw e;
  return e.remote ? `${e.code} ${e.remote.name}: ${e.remote.message}` : e.code;
}

await run('assistant', async ({ sites: [site] }) => {
  const admin = (): Client => site!.client; // replaced when the container restarts

  // The user (their app, on any device) has a key pair of their own; the provider spawns the user's assistant,
  // a Root node (it lives until explicitly destroyed), and lists the user on its ACL.
  const user = Identity.generate();
  const assistant: NodeHandle = await admin().spawn({ lifetime: Lifetime.root(), acl: [user], sandbox: { timeoutMs: 10_000 } });
  console.log(`assistant: ${assistant.url}`);
  const app = await connect(site!.url, { identity: user });
  const send = (session: string, key: string, op: Op, signal?: AbortSignal) => app.call(assistant, request, [session, key, op], { signal });
  const state = () => app.at(assistant, peek);
  // Crashes: kill the node's worker process (the container reports its pid) and wait until the container has
  // noticed (the node is asleep; its next message wakes a new worker).
  const local = ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(site!.url).hostname);
  const crash = async () => {
    const { pid } = await admin().describe(assistant);
    if (!pid) throw new Error('the assistant has no worker to kill');
    process.kill(pid, 'SIGKILL');
    await until('the assistant is asleep', async () => (await admin().describe(assistant)).status === 'asleep');
    return pid;
  };

  try {
    await app.at(assistant, openSession, 'phone');
    const r1 = await send('phone', 'phone-1', { kind: 'topUp', amount: 100 });
    console.log(`phone tops up 100: credit ${r1.credit}`);
    await app.at(assistant, openSession, 'laptop');

    // 1. A response that never arrives. The phone orders a toaster; the request reaches the assistant, but the
    //    phone gives up (its signal fires) before the answer comes back. Did the order go through? The phone
    //    cannot know, so it retries with the same key: the assistant answers from memory, and buys one toaster.
    const lost = new AbortController();
    const first = send('phone', 'phone-2', { kind: 'buy', item: 'toaster', price: 30, slowMs: 800 }, lost.signal).then(() => 'answered', describeError);
    await until('the assistant is processing the order', async () => (await admin().describe(assistant)).status === 'active');
    lost.abort('the phone lost its connection');
    console.log(`phone orders a toaster, loses the response: ${await first}`);
    const retry = await send('phone', 'phone-2', { kind: 'buy', item: 'toaster', price: 30 });
    console.log(`phone retries with the same key: credit ${retry.credit}, orders [${retry.orders}], replayed ${retry.replayed}`);
    check(retry.replayed && retry.credit === 70 && retry.orders.length === 1, 'the retried order was processed once');

    // 2. A request that fails rolls back. The laptop orders a TV it cannot afford: the handler has already
    //    changed the state and queued notifications when it throws, and none of that is kept.
    const tv = await send('laptop', 'laptop-1', { kind: 'buy', item: 'TV', price: 500 }).then(() => 'answered', describeError);
    const afterTv = await state();
    console.log(`laptop orders a TV: ${tv}; state: credit ${afterTv?.credit}, orders [${afterTv?.orders}]`);
    check(tv.startsWith('ERR_USER RangeError') && afterTv?.credit === 70 && afterTv.orders.length === 1, 'the failed request changed nothing');

    // 3. The worker crashes in the middle of a request. Its writes were never committed, so the retry (same key)
    //    runs it for the first time; a second retry is answered from memory. (Killing the worker by its pid needs
    //    the container on this machine.)
    const kettle: Op = { kind: 'buy', item: 'kettle', price: 20 };
    if (local) {
      const doomed = send('phone', 'phone-3', { ...kettle, slowMs: 3000 }).then(() => 'answered', describeError);
      await until('the assistant is processing the order', async () => (await admin().describe(assistant)).status === 'active');
      const pid = await crash();
      console.log(`phone orders a kettle; worker ${pid} killed mid-request: ${await doomed}`);
    }
    const bought = await send('phone', 'phone-3', kettle);
    const again = await send('phone', 'phone-3', kettle);
    console.log(`phone retries: credit ${bought.credit}, orders [${bought.orders}], replayed ${bought.replayed}; retries again: replayed ${again.replayed}`);
    check(!bought.replayed && again.replayed && again.credit === 50 && again.orders.length === 2, 'the kettle was bought exactly once');

    // 4. Kill the worker between requests, then restart the whole container: the assistant wakes with its state.
    if (local) console.log(`worker ${await crash()} killed between requests`);
    if (site!.restart) {
      await site!.restart();
      console.log('container restarted');
    }
    const survived = await state();
    console.log(`after the crash${site!.restart ? 'es and the restart' : 'es'}: credit ${survived?.credit}, orders [${survived?.orders}]`);
    check(survived?.credit === 50 && survived.orders.join() === 'toaster,kettle', 'state survived');
    const late = await send('phone', 'phone-2', { kind: 'buy', item: 'toaster', price: 30 });
    const now = await state();
    console.log(`a late retry of the toaster order: replayed ${late.replayed}, answered as then (credit ${late.credit}); credit now ${now?.credit}`);
    check(late.replayed && late.credit === 70 && now?.credit === 50, 'keys are remembered across crashes and restarts');

    // 5. Notifications: each session has its own queue, kept until that session reads it. The laptop opened its
    //    session after the top-up, and the failed TV order and the crashed attempt queued nothing.
    const phone = await app.at(assistant, readNotifications, 'phone');
    const phoneAgain = await app.at(assistant, readNotifications, 'phone');
    const laptop = await app.at(assistant, readNotifications, 'laptop');
    console.log(`phone notifications: ${JSON.stringify(phone)}`);
    console.log(`phone reads again: ${JSON.stringify(phoneAgain)}`);
    console.log(`laptop notifications: ${JSON.stringify(laptop)}`);
    check(phone.join('|') === 'credit +100 (from phone)|ordered toaster (from phone)|ordered kettle (from phone)', 'the phone\'s queue');
    check(phoneAgain.length === 0, 'reading drains the queue');
    check(laptop.join('|') === 'ordered toaster (from phone)|ordered kettle (from phone)', 'the laptop\'s own queue');

    await admin().destroy(assistant);
  } finally {
    await app.close();
  }
});
