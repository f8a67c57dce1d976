/**
 * Sessions and authenticated replies under attack, against real containers: forged and replayed MACs,
 * counters out of order, reused or behind the window, a session of one container presented to another,
 * handshakes with wrong or mismatched keys, expired and evicted sessions, a restart, proxies that flip reply
 * bytes or strip, swap or replay authenticators, a middlebox refusing hellos (no downgrade to one-off
 * messages), a burst of handshakes from fresh keys, and protocol version mismatches. A counter ref on the
 * node proves what ran.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, beforeAll } from 'vitest';
import { connect, Identity, Lifetime, type KeynodeError } from 'keynode';
import { Container } from 'keynode/container';
import { b64url, decode, encode, oneOffReplyMessage, parseEnvelope, sealEnvelope, signEnvelope, speaksForMessage, x25519Pair } from '../../dist/protocol/index.js';
import { defer, startContainer, tempDir, until, type TestContainer } from '../helpers/containers.js';
import { AUTH_HEADER, freePort, handshake, kindOf, post, rewritingProxy, signedNoSession, type RawSession } from '../helpers/wire.js';

const INCREMENT = 'async (ctx) => { const r = ctx.ref("count"); const n = ((await r.get()) ?? 0) + 1; await r.set(n); return n; }';
const COUNT = 'async (ctx) => (await ctx.ref("count").get()) ?? 0';

let a: TestContainer;
let nodeId: string;
let raw: RawSession;

async function count(c: TestContainer = a, id = nodeId): Promise<number> {
  const s = await handshake(c.url, c.container.id, c.operator);
  const f = s.frame('eval', id, { fn: COUNT, args: encode([]) });
  return decode((await post(c.url, `/${id}`, f.bytes)).value as Uint8Array) as number;
}

function increment(s: RawSession, options: Parameters<RawSession['frame']>[3] = {}) {
  return s.frame('eval', nodeId, { fn: INCREMENT, args: encode([]) }, options);
}

async function caught(p: Promise<unknown>): Promise<KeynodeError & { claimed?: string }> {
  try {
    await p;
  } catch (e) {
    return e as KeynodeError & { claimed?: string };
  }
  throw new Error('expected a rejection, got a value');
}

beforeAll(async () => {
  a = await startContainer();
  nodeId = (await a.client.spawn({ lifetime: Lifetime.root() })).id;
  raw = await handshake(a.url, a.container.id, a.operator);
});

describe('session requests', () => {
  it('a forged MAC is refused (401, unauthenticated: the sender is unknown) and runs nothing', async () => {
    const before = await count();
    for (const flip of [0, 15, 31]) {
      const f = increment(raw);
      const bytes = f.bytes.slice();
      bytes[bytes.length - 32 + flip]! ^= 0x01;
      const answer = await post(a.url, `/${nodeId}`, bytes);
      expect({ status: answer.status, code: answer.code, auth: answer.auth }).toEqual({ status: 401, code: 'ERR_BAD_SIGNATURE', auth: undefined });
    }
    // A MAC under another session's key, with this session's ID.
    const other = await handshake(a.url, a.container.id, a.operator);
    const forged = increment(raw, { key: other.keys.request });
    expect((await post(a.url, `/${nodeId}`, forged.bytes)).code).toBe('ERR_BAD_SIGNATURE');
    // A byte of the covered part changed (the counter), MAC left as it was.
    const f = increment(raw);
    const bytes = f.bytes.slice();
    bytes[bytes.indexOf(0xc4, 2) + 2 + 16]! ^= 0x01; // first byte after the 16-byte session ID: the counter
    expect((await post(a.url, `/${nodeId}`, bytes)).code).toBe('ERR_BAD_SIGNATURE');
    expect(await count()).toBe(before);
  });

  it('a replayed request runs once; the copy gets ERR_REPLAY, MACed for that request', async () => {
    const before = await count();
    const f = increment(raw);
    const first = await post(a.url, `/${nodeId}`, f.bytes);
    expect(first.ok).toBe(true);
    expect(raw.authentic(first, f.mac)).toBe(true);
    const again = await Promise.all([1, 2, 3].map(() => post(a.url, `/${nodeId}`, f.bytes.slice())));
    for (const r of again) {
      expect({ status: r.status, code: r.code }).toEqual({ status: 409, code: 'ERR_REPLAY' });
      expect(raw.authentic(r, f.mac)).toBe(true);
    }
    expect(await count()).toBe(before + 1);
  });

  it('counters: out of order inside the window are accepted once each; reused, or behind the window, are refused', async () => {
    const s = await handshake(a.url, a.container.id, a.operator);
    const before = await count();
    const send = async (n: number) => (await post(a.url, `/${nodeId}`, increment(s, { n }).bytes)).code ?? 'ok';
    expect([await send(5), await send(3), await send(4), await send(3), await send(5)]).toEqual(['ok', 'ok', 'ok', 'ERR_REPLAY', 'ERR_REPLAY']);
    expect(await send(5000)).toBe('ok'); // 4995 ahead: the window moves
    expect(await send(5000 - 4096)).toBe('ERR_REPLAY'); // one behind the window
    expect(await send(5000 - 4095)).toBe('ok'); // the oldest the window holds
    expect(await send(5000 - 4095)).toBe('ERR_REPLAY');
    expect(await send(4999)).toBe('ok');
    expect(await count()).toBe(before + 6);
  });

  it('a session of container A presented to container B is unknown there (signed ERR_NO_SESSION) and runs nothing', async () => {
    const b = await startContainer();
    // The same node key on both containers: the only way a frame could mean something at B.
    const shared = Identity.generate();
    const box = (await import('../../dist/protocol/index.js')).newBoxPair();
    for (const c of [a, b]) {
      const { sealKeys } = await import('../../dist/protocol/index.js');
      await c.client.request('spawn', { lifetime: { kind: 'root' }, keys: [{}], seeds: sealKeys([shared.exportSecretKey()], await (await c.client.channel()).boxKey(), box) } as never);
    }
    const f = raw.frame('eval', shared.id, { fn: INCREMENT, args: encode([]) });
    const atB = await post(b.url, `/${shared.id}`, f.bytes);
    expect({ status: atB.status, code: atB.code }).toEqual({ status: 401, code: 'ERR_NO_SESSION' });
    expect(signedNoSession(b.container.id, atB, f.mac)).toBe(true);
    expect(signedNoSession(a.container.id, atB, f.mac)).toBe(false);
    expect(await count(b, shared.id)).toBe(0);
    // And the same frame at A, where the session lives, runs there.
    expect((await post(a.url, `/${shared.id}`, f.bytes)).ok).toBe(true);
    expect(await count(a, shared.id)).toBe(1);
  });

  it('sending as another principal needs that principal\'s signature over this very session', async () => {
    const callee = await a.client.spawn({ lifetime: Lifetime.root() });
    const someone = Identity.generate();
    // Allowed to eval `callee`: only `someone` (and the operator, its parent).
    await a.client.update(callee, { acl: [someone.id] });
    const stranger = Identity.generate();
    const s = await handshake(a.url, a.container.id, stranger);
    const as = (proof?: Uint8Array) => s.frame('eval', callee.id, { fn: '() => "ran"', args: encode([]) }, { extra: { as: someone.id as never, ...(proof ? { proof } : {}) } });
    const codeOf = async (f: { bytes: Uint8Array }) => (await post(a.url, `/${callee.id}`, f.bytes)).code ?? 'ok';
    expect(await codeOf(as())).toBe('ERR_ACCESS_DENIED'); // no proof
    expect(await codeOf(as(stranger.sign(speaksForMessage(s.sid, stranger.id as never, a.container.id, someone.id as never))))).toBe('ERR_BAD_SIGNATURE'); // signed by the wrong key
    const other = await handshake(a.url, a.container.id, stranger);
    expect(await codeOf(as(someone.sign(speaksForMessage(other.sid, stranger.id as never, a.container.id, someone.id as never))))).toBe('ERR_BAD_SIGNATURE'); // for another session
    expect(await codeOf(as(someone.sign(speaksForMessage(s.sid, stranger.id as never, a.container.id, someone.id as never))))).toBe('ok');
    // Without `as`, the stranger is itself, and not on the ACL.
    expect(await codeOf(s.frame('eval', callee.id, { fn: '() => "ran"', args: encode([]) }))).toBe('ERR_ACCESS_DENIED');
  });
});

describe('handshakes', () => {
  it('a hello with a forged signature, a bad key, or for another container is refused and opens nothing', async () => {
    const who = Identity.generate();
    const opened = a.container.sessions.opened;
    const hello = (epk: unknown, at = a.container.id) => sealEnvelope(who, 'hello', a.container.id, { epk } as never, Date.now(), at);
    // Signed by one key, claiming to be another.
    const env = parseEnvelope(hello(x25519Pair().publicKey));
    const forged = encode({ v: env.v, type: env.type, from: Identity.generate().id, to: env.to, at: env.at, ts: env.ts, nonce: env.nonce, body: env.bodyBytes, sig: env.sig });
    expect((await post(a.url, '/', forged)).code).toBe('ERR_BAD_SIGNATURE');
    for (const epk of [new Uint8Array(31), new Uint8Array(33), 'key', undefined]) expect((await post(a.url, '/', hello(epk))).code, String(epk)).toBe('ERR_BAD_MESSAGE');
    // Low-order points: the shared secret would be all zeros.
    const zero = await post(a.url, '/', hello(new Uint8Array(32)));
    expect(zero.code).toBe('ERR_BAD_MESSAGE');
    expect((await post(a.url, '/', hello(Uint8Array.of(1, ...new Uint8Array(31))))).code).toBe('ERR_BAD_MESSAGE');
    expect((await post(a.url, '/', hello(x25519Pair().publicKey, Identity.generate().id))).code).toBe('ERR_ACCESS_DENIED');
    // Sent in a session: a hello is only ever a signed one-off.
    expect((await post(a.url, '/', raw.frame('hello', a.container.id, { epk: x25519Pair().publicKey }).bytes)).code).toBe('ERR_BAD_MESSAGE');
    expect(a.container.sessions.opened).toBe(opened);
  });

  it('a client learns the container\'s clock only as the container signed it', async () => {
    const shift = (reply: { status: number; headers: Record<string, string>; body: Uint8Array }) => {
      const info = JSON.parse(Buffer.from(reply.body).toString('utf8')) as { time: number };
      info.time += 3_600_000; // an hour ahead: a client believing it would sign messages that expire late
      return { ...reply, body: new Uint8Array(Buffer.from(JSON.stringify(info))) };
    };
    const proxy = await rewritingProxy(a.url, (reply) => reply, shift);
    expect((await caught(connect(proxy.url, { identity: a.operator }))).code).toBe('ERR_BAD_REPLY');
    // Through an honest path the offset it learned is the container's (this machine's: near zero).
    const client = await connect(a.url, { identity: a.operator });
    defer(() => client.close());
    expect((await client.channel()).offset).toBe(0);
  });

  it('a client refuses a container that is not the one it pinned, and a hello answer signed by another key or with a swapped key', async () => {
    const pinned = await caught(connect(a.url, { containerId: Identity.generate().id }));
    expect(pinned.code).toBe('ERR_BAD_REPLY');
    const attacker = Identity.generate();
    for (const tamper of ['resign', 'swap-key'] as const) {
      const proxy = await rewritingProxy(a.url, (reply, request) => {
        if (kindOf(request) !== 'one-off hello') return reply;
        if (tamper === 'resign') {
          const sig = parseEnvelope(request).sig;
          return { ...reply, headers: { ...reply.headers, [AUTH_HEADER]: b64url(attacker.sign(oneOffReplyMessage(sig, reply.body))) } };
        }
        const answer = decode(reply.body) as { ok: true; value: { epk: Uint8Array } };
        answer.value.epk = x25519Pair().publicKey; // the attacker's own key, so it could read the session
        return { ...reply, body: encode(answer) };
      });
      const client = await connect(proxy.url, { identity: a.operator });
      defer(() => client.close());
      const err = await caught(client.at(nodeId, () => 1));
      expect(err.code, tamper).toBe('ERR_BAD_REPLY');
      // Nothing was sent but the hello: a refused handshake is never a reason to fall back to one-off messages.
      expect(proxy.requests.map(kindOf)).toEqual(['one-off hello']);
    }
  });
});

describe('replies', () => {
  it('a proxy that flips any byte of a reply or of its authenticator gets ERR_BAD_REPLY, never a value', async () => {
    let flip = -1;
    let flipAuth = -1;
    const proxy = await rewritingProxy(a.url, (reply, request) => {
      if (kindOf(request) !== 'session') return reply;
      const body = reply.body.slice();
      if (flip >= 0) body[flip]! ^= 0x20;
      const auth = reply.headers[AUTH_HEADER]!;
      const headers = { ...reply.headers };
      // A neighbour in the alphabet: for the last character that may change only its spare bits.
      const next = (c: string) => { const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'; return abc[(abc.indexOf(c) ^ 1)]!; };
      if (flipAuth >= 0) headers[AUTH_HEADER] = auth.slice(0, flipAuth) + next(auth[flipAuth]!) + auth.slice(flipAuth + 1);
      return { ...reply, body, headers };
    });
    const client = await connect(proxy.url, { identity: a.operator });
    defer(() => client.close());
    expect(await client.at(nodeId, () => ({ answer: 42, note: 'the real one' }))).toEqual({ answer: 42, note: 'the real one' });
    const length = (await post(a.url, `/${nodeId}`, raw.frame('eval', nodeId, { fn: "() => ({ answer: 42, note: 'the real one' })", args: encode([]) }).bytes)).body.length;
    const wrong: string[] = [];
    for (let i = 0; i < length; i++) {
      flip = i;
      const got = await client.at(nodeId, () => ({ answer: 42, note: 'the real one' })).then((v) => `value ${JSON.stringify(v)}`, (e: KeynodeError) => e.code);
      if (got !== 'ERR_BAD_REPLY') wrong.push(`byte ${i}: ${got}`);
    }
    flip = -1;
    // The last character of a MAC's base64url carries two spare bits: every change to it is refused too.
    for (const i of [0, 10, 20, 42, 42, 42, 42]) {
      flipAuth = i;
      const got = await client.at(nodeId, () => 1).then((v) => `value ${JSON.stringify(v)}`, (e: KeynodeError) => e.code);
      if (got !== 'ERR_BAD_REPLY') wrong.push(`auth char ${i}: ${got}`);
    }
    expect(wrong).toEqual([]);
  });

  it('downgrade: a stripped authenticator, a container signature where a MAC belongs, a reply replayed from another request, a hello refused by a middlebox', async () => {
    let mode: 'strip' | 'signature' | 'replay' | 'none' = 'none';
    let signedSomething: { auth: string } | undefined;
    let previous: { body: Uint8Array; auth: string } | undefined;
    const proxy = await rewritingProxy(a.url, (reply, request) => {
      const auth = reply.headers[AUTH_HEADER]!;
      if (kindOf(request) !== 'session') {
        signedSomething = { auth };
        return reply;
      }
      const headers = { ...reply.headers };
      let body = reply.body;
      if (mode === 'strip') delete headers[AUTH_HEADER];
      if (mode === 'signature') headers[AUTH_HEADER] = signedSomething!.auth;
      if (mode === 'replay' && previous) {
        body = previous.body;
        headers[AUTH_HEADER] = previous.auth;
      }
      previous = { body: reply.body, auth };
      return { ...reply, body, headers };
    });
    const client = await connect(proxy.url, { identity: a.operator });
    defer(() => client.close());
    expect(await client.at(nodeId, () => 'first')).toBe('first');
    for (const m of ['strip', 'signature', 'replay'] as const) {
      mode = m;
      const err = await caught(client.at(nodeId, () => 'second'));
      expect(err.code, m).toBe('ERR_BAD_REPLY');
    }
    // Every request after the hello went in the session: none was downgraded to a one-off message.
    expect(proxy.requests.map(kindOf).filter((k) => k !== 'session')).toEqual(['one-off hello']);

    // A middlebox answering hellos with an error of its own: the call fails, and nothing else is sent.
    const middlebox = await rewritingProxy(a.url, (reply, request) =>
      kindOf(request) === 'one-off hello' ? { status: 400, headers: { 'content-type': 'application/msgpack' }, body: encode({ ok: false, error: { code: 'ERR_BAD_VERSION', message: 'sessions are not supported; send signed envelopes' } }) } : reply,
    );
    const fresh = await connect(middlebox.url, { identity: a.operator });
    defer(() => fresh.close());
    const refused = await caught(fresh.at(nodeId, () => 1));
    expect(refused.message).toMatch(/did not authenticate/);
    expect(middlebox.requests.map(kindOf)).toEqual(['one-off hello']);
  });
});

describe('one-off messages', () => {
  it('still work beside a session, for rare calls, and their replies are signed by the container over the request', async () => {
    const client = await connect(a.url, { identity: a.operator });
    defer(() => client.close());
    const described = (await client.requestOneOff('describe', { node: nodeId as never })) as { id: string };
    expect(described.id).toBe(nodeId);
    // The same through a proxy that swaps the signature for one over another request: refused.
    let last: string | undefined;
    const proxy = await rewritingProxy(a.url, (reply) => {
      const auth = reply.headers[AUTH_HEADER]!;
      const swapped = last === undefined ? reply : { ...reply, headers: { ...reply.headers, [AUTH_HEADER]: last } };
      last = auth;
      return swapped;
    });
    const viaProxy = await connect(proxy.url, { identity: a.operator });
    defer(() => viaProxy.close());
    await viaProxy.requestOneOff('describe', { node: nodeId as never });
    expect((await caught(viaProxy.requestOneOff('describe', { node: nodeId as never }))).code).toBe('ERR_BAD_REPLY');
  });
});

describe('session lifetimes', () => {
  it('an expired session is refused with a signed ERR_NO_SESSION, and runs nothing', async () => {
    const c = await startContainer({ sessionTtlMs: 1000 });
    const node = await c.client.spawn({ lifetime: Lifetime.root() });
    const who = Identity.generate();
    await c.client.update(node, { acl: [who.id] });
    const s = await handshake(c.url, c.container.id, who);
    await until(() => c.container.sessions.of(who.id as never).length === 0, 10_000, 'the session to expire');
    const late = s.frame('eval', node.id, { fn: INCREMENT, args: encode([]) });
    const answer = await post(c.url, `/${node.id}`, late.bytes);
    expect(answer.code).toBe('ERR_NO_SESSION');
    expect(signedNoSession(c.container.id, answer, late.mac)).toBe(true);
    expect(await count(c, node.id)).toBe(0);
  });

  it('a session the container dropped (its principal opened too many) is reopened by the client transparently; the eval runs once', async () => {
    const c = await startContainer({ maxSessionsPerPrincipal: 1 });
    const node = await c.client.spawn({ lifetime: Lifetime.root() });
    const who = Identity.generate();
    await c.client.update(node, { acl: [who.id] });
    const client = await connect(c.url, { identity: who });
    defer(() => client.close());
    const inc = async () => client.at(node, async (ctx) => {
      const r = ctx.ref<number>('count');
      const n = ((await r.get()) ?? 0) + 1;
      await r.set(n);
      return n;
    });
    expect(await inc()).toBe(1);
    await handshake(c.url, c.container.id, who); // evicts the client's session
    expect(await inc()).toBe(2); // ERR_NO_SESSION (signed) → a new hello → sent again, run once
    expect((await client.channel()).handshakes).toBe(2);
  });

  it('a container restart ends every session; clients open new ones transparently', async () => {
    const data = await tempDir();
    const port = await freePort();
    const first = await Container.start({ port, data, logLevel: 'silent', poolMin: 0 });
    let second: Container | undefined;
    defer(async () => {
      await first.close();
      await second?.close();
    });
    const client = await connect(first.url, { identity: first.operator });
    defer(() => client.close());
    const node = await client.spawn({ lifetime: Lifetime.root() });
    expect(await client.at(node.id, () => 'before')).toBe('before');
    await first.close();
    second = await Container.start({ port, data, logLevel: 'silent', poolMin: 0 });
    expect(await client.at(node.id, () => 'after')).toBe('after');
    expect((await client.channel()).handshakes).toBe(2);
  });

  it('a burst of handshakes from fresh keys on one address is refused with ERR_OVERLOADED; sessions already open keep working', async () => {
    const c = await startContainer({ handshakeRate: 1, handshakeBurst: 8 });
    const node = await c.client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const s = await handshake(c.url, c.container.id, Identity.generate());
    const t0 = Date.now();
    const codes: string[] = [];
    for (let i = 0; i < 30; i++) {
      const fresh = Identity.generate();
      const hello = sealEnvelope(fresh, 'hello', c.container.id, { epk: x25519Pair().publicKey }, Date.now(), c.container.id);
      codes.push((await post(c.url, '/', hello)).code ?? 'ok');
    }
    const refill = Math.ceil((Date.now() - t0) / 1000) + 1;
    const accepted = codes.filter((x) => x === 'ok').length;
    expect(codes.filter((x) => x !== 'ok' && x !== 'ERR_OVERLOADED')).toEqual([]);
    expect(accepted).toBeLessThanOrEqual(8 + refill);
    expect(codes.filter((x) => x === 'ERR_OVERLOADED').length).toBeGreaterThanOrEqual(30 - 8 - refill);
    const ok = await post(c.url, `/${node.id}`, s.frame('eval', node.id, { fn: '() => "still here"', args: encode([]) }).bytes);
    expect(decode(ok.value as Uint8Array)).toBe('still here');
  });
});

describe('protocol versions', () => {
  it('a v2 message gets ERR_BAD_VERSION naming both versions; a v3 client refuses a v2 container before sending anything', async () => {
    const { bytes } = signEnvelope(a.operator, 'describe', a.container.id, { node: nodeId }, Date.now(), a.container.id);
    const m = decode(bytes) as Record<string, unknown>;
    m.v = 2;
    const res = await post(a.url, '/', encode(m));
    expect(res.code).toBe('ERR_BAD_VERSION');
    expect((decode(res.body) as { error: { message: string } }).error.message).toMatch(/version 2 .*speaks 3/);

    let posts = 0;
    const old = createServer((req, r) => {
      if (req.method === 'POST') posts++;
      r.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ containerId: a.container.id, url: 'http://old', v: 2, time: Date.now() }));
    });
    await new Promise<void>((resolve) => old.listen(0, '127.0.0.1', resolve));
    defer(() => new Promise<void>((resolve) => old.close(() => resolve())));
    const err = await caught(connect(`http://127.0.0.1:${(old.address() as AddressInfo).port}`));
    expect(err.code).toBe('ERR_BAD_VERSION');
    expect(err.message).toMatch(/version 2; this client speaks 3/);
    expect(posts).toBe(0);
  });
});
