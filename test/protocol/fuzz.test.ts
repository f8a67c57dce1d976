/**
 * Bounded, seeded fuzzing of a real container's HTTP edge (SPEC §2). Every hostile request gets a 4xx whose
 * MessagePack body is `{ ok: false, error: { code, message } }`, with `code` one of ERROR_STATUS's and the
 * status that code maps to, within TIMEOUT_MS; never a 2xx, a 5xx, a hang or a crash. Every CHECK_EVERY
 * cases (and at the end) a valid signed eval still runs, and the node's counter shows that no hostile eval
 * ever did.
 *
 * Knobs: FUZZ_SEED (default below), FUZZ_CASES (default 5000), FUZZ_ONLY=12,345 (rebuild and send just
 * those cases of that seed; signed cases carry the current time, so their bytes differ run to run but their
 * shape does not). A failure prints the seed, case index, family and the bytes sent.
 *
 * Families (fuzz-gen.ts): random bytes; truncated and byte-mutated valid envelopes; wrong types in every
 * envelope field (and missing, duplicated, oddly keyed fields); validly signed bodies of every message type
 * with wrong types, absurd values or missing fields; headers declaring huge lengths; deep nesting; bad
 * base32 IDs; unknown versions and types; wrong keys; replays; clock skew; oversized bodies; wrong routes;
 * session frames (protocol v3: broken MACs and trailers, unknown sessions, every frame field of the wrong
 * type or value, replayed frames, evals by unknown or malformed hash, speaking for someone without proof)
 * and hellos with bad keys. Checkpoints run a valid eval both as a one-off and in a session (its reply's
 * MAC checked).
 * Besides the seeded cases: every prefix of two valid messages, a concurrent replay, and regressions for
 * what the fuzzing found.
 */
import { Readable } from 'node:stream';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Identity, Lifetime } from 'keynode';
import { decode, encode, ERROR_STATUS, newBoxPair, sealEnvelope, sealKeys } from '../../dist/protocol/index.js';
import { startContainer, type TestContainer } from '../helpers/containers.js';
import { handshake, type RawSession } from '../helpers/wire.js';
import {
  hex, makeCase, pack, replyDecoder, Rng, sessionFrame, validEval, type FuzzCase, type FuzzContext, type Step,
} from './fuzz-gen.js';

const SEED = (process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 0x6b6e0001) >>> 0;
const CASES = process.env.FUZZ_CASES ? Number(process.env.FUZZ_CASES) : 5000;
const ONLY = process.env.FUZZ_ONLY ? process.env.FUZZ_ONLY.split(',').map(Number) : undefined;
const CONCURRENCY = 16;
const CHECK_EVERY = 200;
const TIMEOUT_MS = 5_000;
const MAX_BODY = 256 * 1024;
const MAX_MESSAGE = 64 * 1024;
const SKEW_MS = 30_000;
/** Increments the node's `count` ref and returns it: only valid evals may move it. */
const INCREMENT = 'async (ctx) => { const r = ctx.ref("count"); const n = ((await r.get()) ?? 0) + 1; await r.set(n); return n; }';

interface Failure {
  index: number;
  family: string;
  what: string;
  step: number;
  problem: string;
  request: string;
}

let c: TestContainer;
let pool: Pool;
let ctx: FuzzContext;
let session: RawSession;
/** Valid evals sent so far: the node's counter must equal it. */
let count = 0;
const failures: Failure[] = [];
const codes = new Map<string, number>();
const families = new Map<string, number>();
let slowest = { ms: 0, index: -1, family: '' };

beforeAll(async () => {
  const beforeBoot = Date.now() - 1;
  c = await startContainer({ maxBodyBytes: MAX_BODY, maxMessageBytes: MAX_MESSAGE, skewMs: SKEW_MS });
  const node = await c.client.spawn({ lifetime: Lifetime.root() });
  const decoy = await c.client.spawn({ lifetime: Lifetime.root() });
  const stranger = Identity.generate();
  pool = new Pool(c.url, { connections: CONCURRENCY, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
  session = await handshake(c.url, c.container.id, c.operator);
  ctx = {
    operator: c.operator,
    stranger,
    strangerId: stranger.id,
    containerId: c.client.containerId,
    nodeId: node.id,
    nodeUrl: node.url,
    decoyId: decoy.id,
    increment: INCREMENT,
    beforeBoot,
    skewMs: SKEW_MS,
    maxBodyBytes: MAX_BODY,
    limits: { maxMemoryMB: c.container.options.maxMemoryMB, maxTimeoutMs: c.container.options.maxEvalTimeoutMs, maxMessageBytes: MAX_BODY },
    delivered: [],
    session: { sid: session.sid, request: session.keys.request, next: () => session.next++ },
    deliveredFrames: [],
  };
  // The node is awake and counting before the first hostile byte.
  await checkpoint('start');
});

afterAll(async () => {
  await pool?.destroy();
});

function describeRequest(step: Step): string {
  return `${step.method} ${step.path.slice(0, 80)}${step.chunked ? ' (chunked)' : ''} body=${step.body ? `${step.body.length}B ${hex(step.body, 160)}` : '(none)'}`;
}

async function* chunksOf(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  for (let i = 0; i < bytes.length; i += 16 * 1024) yield bytes.subarray(i, i + 16 * 1024);
}

interface Reply {
  status: number;
  contentType: string | undefined;
  bytes: Uint8Array;
  ms: number;
  auth: string | undefined;
}

async function send(step: Step): Promise<Reply> {
  const started = performance.now();
  const res = await pool.request({
    path: step.path,
    method: step.method as 'POST',
    body: step.body === undefined ? undefined : step.chunked ? Readable.from(chunksOf(step.body)) : step.body,
    headers: { 'content-type': 'application/msgpack' },
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const bytes = new Uint8Array(await res.body.arrayBuffer());
  const type = res.headers['content-type'];
  const auth = res.headers['x-keynode-auth'];
  return { status: res.statusCode, contentType: Array.isArray(type) ? type[0] : type, bytes, ms: performance.now() - started, auth: typeof auth === 'string' ? auth : undefined };
}

/** What is wrong with this reply to a hostile request, or undefined. */
function check(reply: Reply, step: Step): { problem?: string; code?: string } {
  if (reply.ms > TIMEOUT_MS) return { problem: `took ${Math.round(reply.ms)} ms` };
  let decoded: { ok?: unknown; error?: { code?: unknown; message?: unknown } };
  try {
    decoded = replyDecoder.decode(reply.bytes) as typeof decoded;
  } catch (e) {
    return { problem: `status ${reply.status}, reply is not MessagePack (${(e as Error).message}; ${reply.contentType}; ${hex(reply.bytes, 64)})` };
  }
  const code = decoded?.error?.code;
  const summary = `status ${reply.status} ${typeof code === 'string' ? code : JSON.stringify(decoded).slice(0, 200)}`;
  if (reply.status < 400 || reply.status > 499) return { problem: `${summary}: expected a 4xx`, code: String(code) };
  if (reply.contentType !== 'application/msgpack') return { problem: `${summary}: content-type ${reply.contentType}` };
  if (decoded?.ok !== false || typeof code !== 'string' || typeof decoded.error?.message !== 'string') return { problem: `${summary}: not { ok: false, error: { code, message } }` };
  if (!Object.hasOwn(ERROR_STATUS, code)) return { problem: `${summary}: unknown code`, code };
  if (ERROR_STATUS[code as keyof typeof ERROR_STATUS] !== reply.status) return { problem: `${summary}: ${code} maps to ${ERROR_STATUS[code as keyof typeof ERROR_STATUS]}`, code };
  if (step.codes && !step.codes.includes(code)) return { problem: `${summary}: expected ${step.codes.join(' or ')} (${String(decoded.error?.message).slice(0, 200)})`, code };
  return { code };
}

async function runCase(k: FuzzCase): Promise<void> {
  families.set(k.family, (families.get(k.family) ?? 0) + 1);
  for (const [i, step] of k.steps.entries()) {
    let reply: Reply;
    try {
      reply = await send(step);
    } catch (e) {
      const err = e as Error & { code?: string };
      failures.push({ index: k.index, family: k.family, what: k.what, step: i, problem: `request failed: ${err.name} ${err.code ?? ''} ${err.message}`, request: describeRequest(step) });
      return;
    }
    if (reply.ms > slowest.ms) slowest = { ms: reply.ms, index: k.index, family: k.family };
    const { problem, code } = check(reply, step);
    if (code) codes.set(code, (codes.get(code) ?? 0) + 1);
    if (problem) {
      failures.push({ index: k.index, family: k.family, what: k.what, step: i, problem, request: describeRequest(step) });
      return;
    }
  }
}

/** A valid eval still runs exactly once, a container message still answers, and the container is open. */
async function checkpoint(label: string): Promise<void> {
  expect(c.container.status, `container status at ${label}`).toBe('open');
  const wire = validEval(new Rng(SEED ^ (count + 1) * 7919), ctx);
  const reply = await send({ method: 'POST', path: `/${ctx.nodeId}`, body: wire });
  const answer = replyDecoder.decode(reply.bytes) as { ok: boolean; value?: Uint8Array; error?: unknown };
  expect({ label, status: reply.status, ok: answer.ok, error: answer.error }).toEqual({ label, status: 200, ok: true, error: undefined });
  count++;
  expect(decode(answer.value!), `counter at ${label} (a hostile eval ran if it is higher)`).toBe(count);
  expect(reply.ms, `valid eval latency at ${label}`).toBeLessThan(TIMEOUT_MS);
  ctx.delivered.push(wire);
  if (ctx.delivered.length > 20) ctx.delivered.shift();
  // And a valid eval in the operator's session, whose reply must carry this session's MAC for it.
  const frame = sessionFrame(ctx, [3, session.sid, session.next++, 'eval', ctx.nodeId, pack({ fn: ctx.increment, args: encode([]) }), null]);
  const inSession = await send({ method: 'POST', path: `/${ctx.nodeId}`, body: frame });
  const sessionAnswer = replyDecoder.decode(inSession.bytes) as { ok: boolean; value?: Uint8Array; error?: unknown };
  expect({ label, status: inSession.status, ok: sessionAnswer.ok, error: sessionAnswer.error }).toEqual({ label, status: 200, ok: true, error: undefined });
  expect(session.authentic({ body: inSession.bytes, auth: inSession.auth } as never, frame.subarray(frame.length - 32)), `session reply MAC at ${label}`).toBe(true);
  count++;
  expect(decode(sessionAnswer.value!), `counter at ${label} (session)`).toBe(count);
  ctx.deliveredFrames.push(frame);
  if (ctx.deliveredFrames.length > 20) ctx.deliveredFrames.shift();
  const desc = await send({ method: 'POST', path: '/', body: sealEnvelope(ctx.operator, 'describe', ctx.containerId as never, { node: ctx.nodeId }) });
  expect({ label, status: desc.status }).toEqual({ label, status: 200 });
}

async function runCases(indices: number[], build: (index: number) => FuzzCase): Promise<void> {
  for (let from = 0; from < indices.length; from += CHECK_EVERY) {
    const batch = indices.slice(from, from + CHECK_EVERY);
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < batch.length) {
          const index = batch[next++]!;
          await runCase(build(index));
        }
      }),
    );
    await checkpoint(`after case ${batch[batch.length - 1]}`);
  }
}

function report(title: string, started: number, total: number): void {
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const byCode = [...codes.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}:${n}`).join(' ');
  const byFamily = [...families.entries()].map(([k, n]) => `${k}:${n}`).join(' ');
  console.log(`${title}: seed ${SEED} (0x${SEED.toString(16)}), ${total} cases in ${seconds} s; slowest ${Math.round(slowest.ms)} ms (case ${slowest.index}, ${slowest.family})\n  families ${byFamily}\n  codes ${byCode}`);
  if (failures.length) {
    const lines = failures.slice(0, 30).map((f) => `  [seed ${SEED} case ${f.index} ${f.family} step ${f.step}] ${f.what}\n    ${f.problem}\n    ${f.request}`);
    console.error(`${failures.length} failing case(s); rerun one with FUZZ_SEED=${SEED} FUZZ_ONLY=<case>:\n${lines.join('\n')}`);
  }
}

describe(`fuzzing the HTTP edge (seed ${SEED})`, () => {
  it(`${ONLY ? ONLY.length : CASES} seeded hostile cases are each refused with a stable 4xx, and valid evals keep working`, async () => {
    const started = performance.now();
    const indices = ONLY ?? Array.from({ length: CASES }, (_, i) => i);
    failures.length = 0;
    try {
      await runCases(indices, (index) => makeCase(SEED, index, ctx));
    } finally {
      report('fuzz', started, indices.length);
    }
    expect(failures.map((f) => `case ${f.index} ${f.family}: ${f.what}: ${f.problem}`)).toEqual([]);
  }, Math.max(120_000, CASES * 60));

  it('every prefix of a valid eval and of a valid container message is refused as ERR_BAD_MESSAGE', async () => {
    const started = performance.now();
    failures.length = 0;
    codes.clear();
    families.clear();
    const rng = new Rng(SEED);
    const evalWire = validEval(rng, ctx);
    const describeWire = sealEnvelope(ctx.operator, 'describe', ctx.containerId as never, { node: ctx.decoyId });
    const cases: FuzzCase[] = [];
    for (let len = 0; len < evalWire.length; len++) {
      cases.push({ index: len, family: 'prefix/eval', what: `prefix ${len}/${evalWire.length}`, steps: [{ method: 'POST', path: `/${ctx.nodeId}`, body: evalWire.subarray(0, len), codes: ['ERR_BAD_MESSAGE'] }] });
    }
    for (let len = 0; len < describeWire.length; len++) {
      cases.push({ index: evalWire.length + len, family: 'prefix/describe', what: `prefix ${len}/${describeWire.length}`, steps: [{ method: 'POST', path: '/', body: describeWire.subarray(0, len), codes: ['ERR_BAD_MESSAGE'] }] });
    }
    try {
      await runCases(cases.map((k) => k.index), (i) => cases[i]!);
    } finally {
      report('prefixes', started, cases.length);
    }
    expect(failures.map((f) => `${f.family}: ${f.what}: ${f.problem}`)).toEqual([]);
    // And the complete message, which is valid, still runs (once).
    const whole = await send({ method: 'POST', path: `/${ctx.nodeId}`, body: evalWire });
    expect(whole.status).toBe(200);
    count++;
    expect(decode((replyDecoder.decode(whole.bytes) as { value: Uint8Array }).value)).toBe(count);
  }, 120_000);

  it('a body of maxBodyBytes that decodes to a few hundred thousand objects is refused quickly', async () => {
    // Amplification: every byte of this body is an empty map, so decoding builds one object per byte before
    // anything is checked. Measured here at the suite's limit; the default limit is 64 times larger.
    for (const fill of [0x80, 0x90]) {
      const n = MAX_BODY - 5;
      const body = new Uint8Array(MAX_BODY).fill(fill);
      body.set([0xdd, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
      const reply = await send({ method: 'POST', path: `/${ctx.nodeId}`, body });
      const { problem } = check(reply, { method: 'POST', path: '/', codes: ['ERR_BAD_MESSAGE'] });
      expect(problem).toBeUndefined();
      expect(reply.ms).toBeLessThan(2_000);
    }
    await checkpoint('after amplification');
  });

  it('the same valid eval sent 16 times at once runs exactly once; the other 15 are ERR_REPLAY', async () => {
    const wire = validEval(new Rng(SEED + 1), ctx);
    const replies = await Promise.all(Array.from({ length: 16 }, (_, i) => send({ method: 'POST', path: `/${ctx.nodeId}`, body: i % 2 ? wire : wire.slice() })));
    const ok = replies.filter((r) => r.status === 200);
    expect(ok).toHaveLength(1);
    count++;
    expect(decode((replyDecoder.decode(ok[0]!.bytes) as { value: Uint8Array }).value)).toBe(count);
    for (const r of replies.filter((x) => x.status !== 200)) expect(check(r, { method: 'POST', path: '/', codes: ['ERR_REPLAY'] }).problem).toBeUndefined();
    await checkpoint('after the concurrent replay');
  });

  it('update with a sandbox that is not a map (an empty list, empty bytes, a timestamp) → 400, record unchanged', async () => {
    // Found by the bodyField family (e.g. FUZZ_SEED=4, case 406; FUZZ_SEED=6, case 634): Spawner.update only
    // checks `typeof sandbox === 'object'`, and spreading these adds no fields, so the update is accepted.
    const before = await c.client.describe(ctx.decoyId);
    const wrong: string[] = [];
    for (const [what, sandbox] of [['[]', []], ['empty bin', new Uint8Array(0)], ['timestamp ext', new Date(0)], ['[[]]', [[]]]] as const) {
      const body = sealEnvelope(ctx.operator, 'update', ctx.containerId as never, { node: ctx.decoyId, sandbox } as never);
      const reply = await send({ method: 'POST', path: '/', body });
      const { problem, code } = check(reply, { method: 'POST', path: '/', codes: ['ERR_BAD_POLICY', 'ERR_BAD_MESSAGE'] });
      if (problem) wrong.push(`sandbox ${what}: ${problem}`);
      else expect(code).toMatch(/^ERR_BAD_/);
    }
    expect((await c.client.describe(ctx.decoyId)).sandbox).toEqual(before.sandbox);
    expect(wrong).toEqual([]);
  });

  it('spawn keys that repeat within one batch, or name the spawner itself, are refused and charge no budget', async () => {
    // Spawner.spawn checks each seed's ID against the store only, so two equal seeds in one batch both pass
    // (one node, charged twice, listed twice), and a seed whose ID is the spawner's own makes a node that is
    // its own parent and shadows the principal's budget; destroying it then corrupts the accounting
    // (seen: used 5 of maxNodes 3). The operator can do the same with its own seed: a node named like the container.
    const principal = Identity.generate();
    await c.client.request('grant', { principal: principal.id, budget: { maxNodes: 3, maxAwake: 3, memoryMB: 512 } });
    const budget = async () => (((await c.client.request('budget', { principal: principal.id })) as { used: { nodes: number } }).used.nodes);
    const seed = new Uint8Array(32).fill(0x5a);
    const wrong: string[] = [];
    // Seeds travel sealed to the container's box key (it is in /.well-known/keynode too).
    const boxKey = await (await c.client.channel()).boxKey();
    const sealed = (keys: Uint8Array[]) => sealKeys(keys, boxKey, newBoxPair());
    for (const [what, body] of [
      ['the same seed twice', { lifetime: Lifetime.root(), count: 2, keys: [{}, {}], seeds: sealed([seed, seed]) }],
      ["the spawner's own seed", { lifetime: Lifetime.root(), keys: [{}], seeds: sealed([principal.exportSecretKey()]) }],
    ] as const) {
      const reply = await send({ method: 'POST', path: '/', body: sealEnvelope(principal, 'spawn', ctx.containerId as never, body as never) });
      const { problem } = check(reply, { method: 'POST', path: '/', codes: ['ERR_BAD_POLICY'] });
      if (problem) wrong.push(`${what}: ${problem}`);
    }
    expect({ wrong, used: await budget() }).toEqual({ wrong: [], used: 0 });
  });

  it('a 16 MiB body of empty maps (the default maxBodyBytes) does not stall the container', async () => {
    // Amplification: the envelope is decoded in full, on the event loop, before anything is checked, and each
    // byte 0x80 becomes an object. At the default limit that is 16 million objects (~1 GB) for one request
    // from anyone: measured at ~9 s of blocked event loop on this machine, during which nothing else answers.
    const big = await startContainer();
    const limit = big.container.options.maxBodyBytes;
    const n = limit - 5;
    const body = new Uint8Array(limit).fill(0x80);
    body.set([0xdd, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
    const bigPool = new Pool(big.url, { connections: 2, headersTimeout: 60_000, bodyTimeout: 60_000 });
    try {
      const started = performance.now();
      const hostile = bigPool.request({ path: '/', method: 'POST', body, headers: { 'content-type': 'application/msgpack' } }).then(async (res) => ({ status: res.statusCode, bytes: new Uint8Array(await res.body.arrayBuffer()), ms: performance.now() - started }));
      await new Promise((r) => setTimeout(r, 300));
      const t0 = performance.now();
      const probe = await bigPool.request({ path: '/livez', method: 'GET' });
      await probe.body.text();
      const probeMs = performance.now() - t0;
      const answer = await hostile;
      expect(answer.status).toBe(400);
      expect(Math.round(probeMs), 'ms for GET /livez while the container decodes the body').toBeLessThan(2_000);
      expect(Math.round(answer.ms), 'ms until the 16 MiB body is refused').toBeLessThan(TIMEOUT_MS);
    } finally {
      await bigPool.destroy();
    }
  }, 90_000);

  it('the node counted exactly the valid evals', async () => {
    expect(await c.client.at(ctx.nodeUrl, (k) => k.ref('count').get())).toBe(count);
    expect(c.container.status).toBe('open');
  });
});
