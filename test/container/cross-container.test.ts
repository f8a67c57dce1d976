import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type KeynodeError } from 'keynode';
import { decode, newBoxPair, sealEnvelope, sealKeys } from '../../dist/protocol/index.js';
import { startContainer } from '../helpers/containers.js';

describe('ctx.at across nodes and containers', () => {
  it('a node on container A calls a node on container B by URL, signed as itself and checked against B\'s ACL', async () => {
    const a = await startContainer();
    const b = await startContainer();
    const caller = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any' } });
    const stranger = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any' } });
    const callee = await b.client.spawn({ lifetime: Lifetime.root(), acl: [caller.url] });
    await b.client.at(callee, (ctx) => ctx.ref('greeting').set('hello from B'));

    const answer = await a.client.at(
      caller,
      async (ctx, target: string) => ctx.at(target, async (inner, who: string) => `${await inner.ref('greeting').get()} to ${inner.caller === who ? 'you' : 'someone else'}`, ctx.here.id),
      callee.url,
    );
    expect(answer).toBe('hello from B to you');

    const denied = (await a.client.at(stranger, (ctx, target: string) => ctx.at(target, () => 'should not run'), callee.url).catch((e: unknown) => e)) as KeynodeError;
    expect(denied.code).toBe('ERR_ACCESS_DENIED');
  });

  it('computation bounces between nodes on one container, and a call back into a waiting node is refused', async () => {
    const { client } = await startContainer();
    const first = await client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any' } });
    const second = await client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any' }, acl: [first.id] });
    const hops = await client.at(first, (ctx, next: string) => ctx.at(next, (c2) => ['second saw', c2.caller]), second.url);
    expect(hops).toEqual(['second saw', first.id]);
    const cycle = (await client
      .at(first, (ctx, next: string, back: string) => ctx.at(next, (c2, b: string) => c2.at(b, () => 'deadlock?'), back), second.url, first.url)
      .catch((e: unknown) => e)) as KeynodeError;
    expect(cycle.code).toBe('ERR_CYCLE');
  });

  it('a call chain that comes back to a waiting node through another container ends with ERR_CYCLE, not a timeout', async () => {
    const a = await startContainer();
    const b = await startContainer();
    const x = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any', timeoutMs: 20_000 } });
    const y = await b.client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any', timeoutMs: 20_000 }, acl: [x.url] });
    await a.client.update(x, { acl: [y.url] });
    const t0 = performance.now();
    const err = (await a.client
      .at(x, (ctx, yUrl: string, xUrl: string) => ctx.at(yUrl, (inner, back: string) => inner.at(back, () => 'deadlock?'), xUrl), y.url, x.url)
      .catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_CYCLE');
    // Refused as soon as the call arrives back at A, far inside the 20 s it would otherwise wait.
    expect(performance.now() - t0).toBeLessThan(15_000);
    // The chain is in the authenticated request: both nodes are free again and answer at once.
    expect(await a.client.at(x, () => 'x free')).toBe('x free');
    expect(await b.client.at(y, () => 'y free')).toBe('y free');
  });

  it('sandbox.contacts bounds ctx.at before any message leaves the node', async () => {
    const { client } = await startContainer();
    const target = await client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const closed = await client.spawn({ lifetime: Lifetime.root() });
    const listed = await client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [target.url] } });
    const err = (await client.at(closed, (ctx, t: string) => ctx.at(t, () => 1), target.url).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_SANDBOX');
    expect(await client.at(listed, (ctx, t: string) => ctx.at(t, () => 1), target.url)).toBe(1);
  });
});

describe('describe and logs across containers', () => {
  it("a client connected to A describes and reads the logs of its node on B by the node's URL", async () => {
    const a = await startContainer();
    const b = await startContainer();
    const me = Identity.generate();
    await b.client.grant(me, { maxNodes: 1, maxAwake: 1, memoryMB: 256 });
    const onB = await connect(b.url, { identity: me });
    const onA = await connect(a.url, { identity: me });
    try {
      const node = await onB.spawn({ lifetime: Lifetime.root() });
      await onB.at(node, (ctx) => ctx.log('hello from B'));
      const info = await onA.describe(node.url);
      expect({ id: info.id, url: info.url, parent: info.parent }).toEqual({ id: node.id, url: node.url, parent: me.id });
      expect((await onA.logs(node.url, { wait: 10_000 })).map((l) => l.line)).toEqual(['hello from B']);
      // Still checked by B: a stranger connected to A gets B's refusal, not a client-side error.
      const stranger = await connect(a.url);
      try {
        const denied = (await stranger.describe(node.url).catch((e: unknown) => e)) as KeynodeError;
        expect(denied.code).toBe('ERR_ACCESS_DENIED');
      } finally {
        await stranger.close();
      }
    } finally {
      await onA.close();
      await onB.close();
    }
  });
});

describe('destroy', () => {
  it('deletes state, ends the process and refuses later messages', async () => {
    const { container, client, url } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    await client.at(node, (ctx) => ctx.ref('secret').set(42));
    const { pid } = await client.describe(node);
    expect(pid).toBeGreaterThan(0);

    const stranger = await connect(url);
    try {
      const denied = (await stranger.destroy(node.url).catch((e: unknown) => e)) as KeynodeError;
      expect(denied.code).toBe('ERR_ACCESS_DENIED');
      expect(await stranger.at(node.url, (ctx) => ctx.ref('secret').get())).toBe(42);
    } finally {
      await stranger.close();
    }

    const slept = new Promise((resolve) => container.on('sleep', (id, why) => id === node.id && resolve(why)));
    await client.destroy(node); // signed with the node's own key, which the spawner's handle holds
    expect(await slept).toBe('destroyed');
    for (const attempt of [() => client.at(node, () => 1), () => client.describe(node), () => client.destroy(node)]) {
      const err = (await attempt().catch((e: unknown) => e)) as KeynodeError;
      expect(['ERR_NODE_DESTROYED', 'ERR_NODE_NOT_FOUND']).toContain(err.code);
    }
  });
});

describe('envelopes name the container they are for', () => {
  it('a destroy accepted by container A is refused by container B, where a node has the same key', async () => {
    const a = await startContainer();
    const b = await startContainer();
    const seed = new Uint8Array(randomBytes(32));
    const key = Identity.fromSecretKey(seed);
    // The chosen seed travels sealed to each container's box key, never in clear.
    for (const c of [a, b]) {
      const seeds = sealKeys([seed], await (await c.client.channel()).boxKey(), newBoxPair());
      await c.client.request('spawn', { lifetime: { kind: 'root' }, count: 1, keys: [{}], seeds } as never);
    }
    const post = async (url: string, body: Uint8Array) => {
      const res = await request(`${url}/${key.id}`, { method: 'POST', body, headers: { 'content-type': 'application/msgpack' } });
      return decode(new Uint8Array(await res.body.arrayBuffer())) as { ok: boolean; error?: { code: string } };
    };
    const destroyAtA = sealEnvelope(key, 'destroy', key.id, {}, Date.now(), a.client.containerId);
    expect(await post(a.url, destroyAtA)).toMatchObject({ ok: true });
    const replayed = await post(b.url, destroyAtA);
    expect(replayed).toMatchObject({ ok: false, error: { code: 'ERR_ACCESS_DENIED' } });
    expect((await b.client.describe(key.id)).status).toBe('asleep');
    expect((await a.client.describe(key.id).catch((e: KeynodeError) => e)) as KeynodeError).toMatchObject({ code: 'ERR_NODE_DESTROYED' });
    // A client's own destroy of the node on B is signed for B, and works.
    await connect(b.url, { identity: key }).then(async (owner) => {
      await owner.destroy(`${b.url}/${key.id}`);
      await owner.close();
    });
  });
});
