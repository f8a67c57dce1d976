/**
 * Hostile requests at a real container's HTTP edge (SPEC §2): each is refused with its own status and code,
 * runs nothing, and leaves the container serving its node as before.
 */
import { decode as msgpackDecode, encode as msgpackEncode } from '@msgpack/msgpack';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type Client, type KeynodeError, type NodeHandle } from 'keynode';
import { encode, decode, sealEnvelope } from '../../dist/protocol/index.js';
import { startContainer, type TestContainer } from '../helpers/containers.js';

const MAX_BODY = 64 * 1024;
/** Increments the node's `count` ref and returns it: a replay or a refused eval that ran would show. */
const INCREMENT = 'async (ctx) => { const r = ctx.ref("count"); const n = ((await r.get()) ?? 0) + 1; await r.set(n); return n; }';

interface Answer {
  status: number;
  reply: { ok: boolean; value?: unknown; error?: { code: string; message: string } };
}

let c: TestContainer;
let client: Client;
let node: NodeHandle;
/** What `count` on `node` must be; only a successful eval moves it. */
let count = 0;

async function send(path: string, body: Uint8Array | Readable | undefined, method: 'POST' | 'GET' = 'POST'): Promise<Answer> {
  const res = await request(`${c.url}${path}`, { method, body, headers: { 'content-type': 'application/msgpack' } });
  const bytes = new Uint8Array(await res.body.arrayBuffer());
  return { status: res.statusCode, reply: msgpackDecode(bytes) as Answer['reply'] };
}

function expectRefused(answer: Answer, status: number, code: string): void {
  expect({ status: answer.status, ok: answer.reply.ok, code: answer.reply.error?.code }).toEqual({ status, ok: false, code });
  expect(typeof answer.reply.error?.message).toBe('string');
}

/** A validly signed eval of INCREMENT (or `fn`) for `to`. */
function evalEnvelope(signer: Identity, to: string, options: { ts?: number; fn?: string; args?: unknown[]; at?: string } = {}): Uint8Array {
  return sealEnvelope(signer, 'eval', to, { fn: options.fn ?? INCREMENT, args: encode(options.args ?? []) }, options.ts, options.at ?? c.client.containerId);
}

/** The envelope's wire map with `patch` applied, re-encoded (the signature is left as it was). */
function rewrite(wire: Uint8Array, patch: (m: Record<string, unknown>) => void): Uint8Array {
  const map = msgpackDecode(wire) as Record<string, unknown>;
  patch(map);
  return msgpackEncode(map);
}

/** The container still runs evals on the node, and nothing changed its state. */
async function expectUnchanged(): Promise<void> {
  expect(await client.at(node, () => 1)).toBe(1);
  expect(await client.at(node, (ctx) => ctx.ref('count').get())).toBe(count);
  expect(await client.at(node, (ctx) => ctx.ref('mark').get())).toBe('written before');
}

beforeAll(async () => {
  // maxMessageBytes (the sandbox default) may not exceed maxBodyBytes, so it comes down with it.
  c = await startContainer({ maxBodyBytes: MAX_BODY, maxMessageBytes: 32 * 1024 });
  client = c.client;
  node = await client.spawn({ lifetime: Lifetime.root() });
  await client.at(node, (ctx) => ctx.ref('mark').set('written before'));
  count = (await send(`/${node.id}`, evalEnvelope(c.operator, node.id)).then((a) => decode(a.reply.value as Uint8Array))) as number;
  expect(count).toBe(1);
});

describe('hostile requests are refused and change nothing', () => {
  beforeEach(async () => {
    // Each case starts from a node that works (and is awake: a refused request must not wake or kill it).
    await expectUnchanged();
  });

  it('control: a valid signed eval runs once and answers 200', async () => {
    const answer = await send(`/${node.id}`, evalEnvelope(c.operator, node.id));
    expect(answer.status).toBe(200);
    expect(answer.reply.ok).toBe(true);
    expect(decode(answer.reply.value as Uint8Array)).toBe(++count);
    await expectUnchanged();
  });

  it('a stranger evals on a node the operator spawned → 403 ERR_ACCESS_DENIED', async () => {
    const strangerId = Identity.generate();
    const stranger = await connect(c.url, { identity: strangerId });
    try {
      const err = (await stranger.at(node.url, () => 1).catch((e: unknown) => e)) as KeynodeError;
      expect(err.code).toBe('ERR_ACCESS_DENIED');
      const err2 = (await stranger.at(node.url, (ctx) => ctx.ref('mark').set('stranger was here')).catch((e: unknown) => e)) as KeynodeError;
      expect(err2.code).toBe('ERR_ACCESS_DENIED');
    } finally {
      await stranger.close();
    }
    expectRefused(await send(`/${node.id}`, evalEnvelope(strangerId, node.id)), 403, 'ERR_ACCESS_DENIED');
    await expectUnchanged();
  });

  it('a stranger without a budget tries to spawn → 4xx ERR_BUDGET_EXHAUSTED, and no node is created', async () => {
    const listed = async () => ((await client.request('list', {})) as { nodes: unknown[] }).nodes.length;
    const before = await listed();
    const strangerId = Identity.generate();
    const stranger = await connect(c.url, { identity: strangerId });
    try {
      const err = (await stranger.spawn({ lifetime: Lifetime.root() }).catch((e: unknown) => e)) as KeynodeError;
      expect(err.code).toBe('ERR_BUDGET_EXHAUSTED');
    } finally {
      await stranger.close();
    }
    const answer = await send('/', sealEnvelope(strangerId, 'spawn', client.containerId, { lifetime: Lifetime.root(), count: 5 }));
    expect(answer.status).toBeGreaterThanOrEqual(400);
    expect(answer.status).toBeLessThan(500);
    expectRefused(answer, answer.status, 'ERR_BUDGET_EXHAUSTED');
    expect(await listed()).toBe(before);
    await expectUnchanged();
  });

  it('a flipped signature byte → 401 ERR_BAD_SIGNATURE', async () => {
    for (const at of [0, 31, 63]) {
      const forged = rewrite(evalEnvelope(c.operator, node.id), (m) => {
        const sig = new Uint8Array(m.sig as Uint8Array);
        sig[at] = sig[at]! ^ 0x80;
        m.sig = sig;
      });
      expectRefused(await send(`/${node.id}`, forged), 401, 'ERR_BAD_SIGNATURE');
    }
    // A valid signature over a different body does not carry over either.
    const other = msgpackDecode(evalEnvelope(c.operator, node.id, { fn: '() => 1' })) as Record<string, unknown>;
    const swapped = rewrite(evalEnvelope(c.operator, node.id), (m) => (m.sig = other.sig));
    expectRefused(await send(`/${node.id}`, swapped), 401, 'ERR_BAD_SIGNATURE');
    await expectUnchanged();
  });

  it('a replayed envelope → 409 ERR_REPLAY, and the eval ran only once', async () => {
    const wire = evalEnvelope(c.operator, node.id);
    const first = await send(`/${node.id}`, wire);
    expect(first.status).toBe(200);
    expect(decode(first.reply.value as Uint8Array)).toBe(++count);
    expectRefused(await send(`/${node.id}`, wire), 409, 'ERR_REPLAY');
    // Also when the replay comes on a fresh connection, and a third time.
    expectRefused(await send(`/${node.id}`, new Uint8Array(wire)), 409, 'ERR_REPLAY');
    await expectUnchanged();
  });

  it('a ts outside the skew window → 401 ERR_CLOCK_SKEW, past or future', async () => {
    for (const offset of [-10 * 60_000, 10 * 60_000, -24 * 3600_000]) {
      const wire = evalEnvelope(c.operator, node.id, { ts: Date.now() + offset });
      expectRefused(await send(`/${node.id}`, wire), 401, 'ERR_CLOCK_SKEW');
    }
    await expectUnchanged();
  });

  it('garbage, a truncated envelope and a msgpack array → 400 ERR_BAD_MESSAGE', async () => {
    const wire = evalEnvelope(c.operator, node.id);
    const map = msgpackDecode(wire) as Record<string, unknown>;
    const bodies: [string, Uint8Array][] = [
      ['garbage', new Uint8Array([0xc1, 0xde, 0xad, 0xbe, 0xef])],
      ['text', new TextEncoder().encode('{"v":1,"type":"eval"}')],
      ['empty', new Uint8Array(0)],
      ['truncated', wire.subarray(0, wire.length - 20)],
      ['truncated to one byte', wire.subarray(0, 1)],
      ['an array', msgpackEncode([map.v, map.type, map.from, map.to, map.ts, map.nonce, map.body, map.sig])],
      ['a string', msgpackEncode('eval')],
      ['a map missing sig', rewrite(wire, (m) => delete m.sig)],
    ];
    for (const [what, body] of bodies) {
      const answer = await send(`/${node.id}`, body);
      expect({ what, status: answer.status, code: answer.reply.error?.code }).toEqual({ what, status: 400, code: 'ERR_BAD_MESSAGE' });
    }
    await expectUnchanged();
  });

  it('a validly signed eval with a malformed body → 400 ERR_BAD_MESSAGE', async () => {
    const bodies: [string, unknown][] = [
      ['fn not a string', { fn: 42, args: encode([]) }],
      ['args not bytes', { fn: INCREMENT, args: [] }],
      ['no fn', { args: encode([]) }],
      ['body an array', [INCREMENT, encode([])]],
    ];
    for (const [what, body] of bodies) {
      const answer = await send(`/${node.id}`, sealEnvelope(c.operator, 'eval', node.id, body as never, Date.now(), c.client.containerId));
      expect({ what, status: answer.status, code: answer.reply.error?.code }).toEqual({ what, status: 400, code: 'ERR_BAD_MESSAGE' });
    }
    await expectUnchanged();
  });

  it('v: 99 → 400 ERR_BAD_VERSION', async () => {
    const wire = rewrite(evalEnvelope(c.operator, node.id), (m) => (m.v = 99));
    expectRefused(await send(`/${node.id}`, wire), 400, 'ERR_BAD_VERSION');
    await expectUnchanged();
  });

  it('a body over maxBodyBytes with a Content-Length → 413 ERR_TOO_LARGE', async () => {
    // A validly signed eval that would run if its size were allowed.
    const wire = evalEnvelope(c.operator, node.id, { args: ['x'.repeat(MAX_BODY)] });
    expect(wire.length).toBeGreaterThan(MAX_BODY);
    expectRefused(await send(`/${node.id}`, wire), 413, 'ERR_TOO_LARGE');
    await expectUnchanged();
  });

  it('a body over maxBodyBytes sent chunked (no Content-Length) → 413 ERR_TOO_LARGE', async () => {
    const wire = evalEnvelope(c.operator, node.id, { args: ['x'.repeat(MAX_BODY)] });
    // A stream of unknown length: undici sends it with Transfer-Encoding: chunked.
    async function* chunks(): AsyncIterable<Uint8Array> {
      for (let i = 0; i < wire.length; i += 4096) yield wire.subarray(i, i + 4096);
    }
    expectRefused(await send(`/${node.id}`, Readable.from(chunks())), 413, 'ERR_TOO_LARGE');
    await expectUnchanged();
  });

  it('a body just under maxBodyBytes is accepted (control for the size cases)', async () => {
    const small = await client.spawn({ lifetime: Lifetime.root(), sandbox: { maxMessageBytes: 32 * 1024 } });
    const wire = evalEnvelope(c.operator, small.id, { fn: '(ctx, s) => s.length', args: ['y'.repeat(30 * 1024)] });
    expect(wire.length).toBeLessThan(MAX_BODY);
    const answer = await send(`/${small.id}`, wire);
    expect(answer.status).toBe(200);
    expect(decode(answer.reply.value as Uint8Array)).toBe(30 * 1024);
  });

  it('an unknown node id → 404 ERR_NODE_NOT_FOUND', async () => {
    const nobody = Identity.generate().id;
    expectRefused(await send(`/${nobody}`, evalEnvelope(c.operator, nobody)), 404, 'ERR_NODE_NOT_FOUND');
    await expectUnchanged();
  });

  it('a path that is not a node id → 400 ERR_BAD_NODE_ID', async () => {
    for (const path of ['/hello', `/${node.id.toUpperCase()}`, `/${node.id.slice(1)}`, `/${node.id}/extra`]) {
      const answer = await send(path, evalEnvelope(c.operator, node.id));
      expect({ path, status: answer.status, code: answer.reply.error?.code }).toEqual({ path, status: 400, code: 'ERR_BAD_NODE_ID' });
    }
    await expectUnchanged();
  });

  it('GET on a node path → 405', async () => {
    const answer = await send(`/${node.id}`, undefined, 'GET');
    expectRefused(answer, 405, 'ERR_METHOD_NOT_ALLOWED');
    await expectUnchanged();
  });

  it('an eval envelope POSTed to a different node’s path, or to the container → 400 ERR_BAD_MESSAGE', async () => {
    const other = await client.spawn({ lifetime: Lifetime.root() });
    expectRefused(await send(`/${other.id}`, evalEnvelope(c.operator, node.id)), 400, 'ERR_BAD_MESSAGE');
    expectRefused(await send('/', evalEnvelope(c.operator, node.id)), 400, 'ERR_BAD_MESSAGE');
    // Neither node ran it.
    expect(await client.at(other, (ctx) => ctx.ref('count').get())).toBe(null);
    await expectUnchanged();
  });

  it('an eval larger than the node’s sandbox.maxMessageBytes → 413 ERR_TOO_LARGE', async () => {
    const tiny = await client.spawn({ lifetime: Lifetime.root(), sandbox: { maxMessageBytes: 2048 } });
    const big = evalEnvelope(c.operator, tiny.id, { args: ['z'.repeat(3000)] });
    expect(big.length).toBeLessThan(MAX_BODY); // within the container's limit: the node's own cap refuses it
    expectRefused(await send(`/${tiny.id}`, big), 413, 'ERR_TOO_LARGE');
    // Through the client as well, and the node still takes small evals, which shows nothing ran before.
    const err = (await client.at(tiny, (ctx, s: string) => s.length, 'z'.repeat(3000)).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_TOO_LARGE');
    expect(await client.at(tiny, (ctx) => ctx.ref('count').get())).toBe(null);
    const ok = await send(`/${tiny.id}`, evalEnvelope(c.operator, tiny.id));
    expect(ok.status).toBe(200);
    expect(decode(ok.reply.value as Uint8Array)).toBe(1);
    await expectUnchanged();
  });

  it('sandbox.maxMessageBytes counts bytes, not characters, of the function source', async () => {
    const tiny = await client.spawn({ lifetime: Lifetime.root(), sandbox: { maxMessageBytes: 2048 } });
    // 700 three-byte characters: 700 UTF-16 units, but over 2,100 bytes on the wire.
    const fn = `() => "${'€'.repeat(700)}".length`;
    expect(fn.length).toBeLessThan(2048);
    expect(Buffer.byteLength(fn)).toBeGreaterThan(2048);
    expectRefused(await send(`/${tiny.id}`, evalEnvelope(c.operator, tiny.id, { fn })), 413, 'ERR_TOO_LARGE');
    await expectUnchanged();
  });

  it('refused requests do not wake an asleep node', async () => {
    const sleeper = await client.spawn({ lifetime: Lifetime.root(), sandbox: { maxMessageBytes: 2048 } });
    const wakes: string[] = [];
    const onWake = (id: string) => wakes.push(id);
    c.container.on('wake', onWake);
    try {
      const stranger = Identity.generate();
      const valid = evalEnvelope(c.operator, sleeper.id);
      const refused: [Uint8Array, number][] = [
        [evalEnvelope(stranger, sleeper.id), 403],
        [rewrite(valid, (m) => (m.sig = new Uint8Array(64))), 401],
        [evalEnvelope(c.operator, sleeper.id, { ts: Date.now() - 3600_000 }), 401],
        [evalEnvelope(c.operator, sleeper.id, { args: ['z'.repeat(3000)] }), 413],
        [rewrite(valid, (m) => (m.v = 99)), 400],
      ];
      for (const [wire, status] of refused) expect((await send(`/${sleeper.id}`, wire)).status).toBe(status);
      expect(wakes).toEqual([]);
      expect((await client.describe(sleeper)).status).toBe('asleep');
      // The control: the one valid message wakes it.
      expect((await send(`/${sleeper.id}`, valid)).status).toBe(200);
      expect(wakes).toEqual([sleeper.id]);
    } finally {
      c.container.off('wake', onWake);
    }
  });
});
