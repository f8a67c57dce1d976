/**
 * Regressions for holes a review found: each test fails on the code before its fix.
 */
import { chmod, mkdir, stat } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type KeynodeError } from 'keynode';
import { startContainer, tempDir } from '../helpers/containers.js';

const codeOf = async (p: Promise<unknown>) => ((await p.then(() => undefined, (e: unknown) => e)) as KeynodeError | undefined)?.code;

describe('hardening', () => {
  it('index entries() is bounded in bytes, not only in rows: a page too big is refused, a smaller one works', async () => {
    const { client } = await startContainer({ maxBodyBytes: 256 * 1024, maxMessageBytes: 64 * 1024 });
    const node = await client.spawn({ lifetime: Lifetime.root(), sandbox: { maxMessageBytes: 64 * 1024 } });
    // 8 values of 60 KiB: 480 KiB, past the 256 KiB a frame may carry, written over a few evals.
    for (let i = 0; i < 4; i++) await client.at(node, async (ctx, i: number) => { for (const j of [0, 1]) await ctx.index('big').put(`k${i}${j}`, 'x'.repeat(60 * 1024)); }, i);
    expect(await codeOf(client.at(node, (ctx) => ctx.index('big').entries()))).toBe('ERR_TOO_LARGE');
    expect(await client.at(node, async (ctx) => (await ctx.index('big').entries({ limit: 3 })).length)).toBe(3);
  });

  it('ctx.destroySelf: a failed eval takes its request with it, and only an ancestor may ask', async () => {
    const { client, url, container } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    expect(await codeOf(client.at(node, async (ctx) => { await ctx.destroySelf(); throw new Error('changed my mind'); }))).toBe('ERR_USER');
    expect(await client.at(node, async (ctx) => { await ctx.ref('v').set(1); return 'still here'; })).toBe('still here');
    expect(await client.at(node, (ctx) => ctx.ref('v').get())).toBe(1);

    const stranger = await connect(url);
    try {
      expect(await codeOf(stranger.at(node.url, (ctx) => ctx.destroySelf()))).toBe('ERR_ACCESS_DENIED');
    } finally {
      await stranger.close();
    }
    const gone = new Promise((r) => container.on('destroy', (id) => id === node.id && r(id)));
    expect(await client.at(node, async (ctx) => { await ctx.ref('v').set(2); await ctx.destroySelf(); return 'bye'; })).toBe('bye');
    await gone;
    expect(await codeOf(client.at(node, () => 1))).toBe('ERR_NODE_DESTROYED');
  });

  it('keys outside the Basic Multilingual Plane stay inside their node: listed in order, reset and destroyed with it', async () => {
    const { client, container } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.resetting(0.2) });
    const keys = await client.at(node, async (ctx) => {
      for (const k of ['Zulu', '👽 E.T.', '\uffff', 'Alien', '\ud7ff']) await ctx.index('films').put(k, k.length);
      await ctx.ref('👽').set('hidden?');
      return (await ctx.index('films').entries()).map(([k]) => k);
    });
    expect(keys).toEqual(['Alien', 'Zulu', '\ud7ff', '\uffff', '👽 E.T.']); // code point order, as stored
    expect((await client.at(node, (ctx) => ctx.index('films').entries())).length).toBe(5);
    await new Promise((r) => container.on('reset', (id) => id === node.id && r(id)));
    expect(await client.at(node, async (ctx) => [await ctx.ref('👽').get(), (await ctx.index('films').entries()).length])).toEqual([null, 0]);
  });

  it('a spawn signed with a node\'s key is that node spawning, under its sandbox and budget', async () => {
    const { url, client: operator } = await startContainer();
    const someone = Identity.generate();
    await operator.grant(someone, { maxNodes: 5, maxAwake: 1, memoryMB: 64 });
    const client = await connect(url, { identity: someone });
    try {
      const node = await client.spawn({ lifetime: Lifetime.root() });
      const asNode = await connect(url, { identity: node.identity()! });
      try {
        expect(await codeOf(asNode.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any' } }))).toBe('ERR_SANDBOX');
      } finally {
        await asNode.close();
      }
      expect((await client.budget()).used.nodes).toBe(1);
    } finally {
      await client.close();
    }
  });

  it('destroying a node while its wake waits for room returns the room', async () => {
    const { url, client: operator, container } = await startContainer();
    const someone = Identity.generate();
    await operator.grant(someone, { maxNodes: 5, maxAwake: 1, memoryMB: 256 });
    const client = await connect(url, { identity: someone });
    try {
      const [a, b] = await client.spawnMany(2, { lifetime: Lifetime.root() });
      await client.at(a!, () => 1);
      // b's wake must first put a to sleep; destroy b meanwhile.
      const waking = client.at(b!, () => 2).catch(() => undefined);
      await new Promise((r) => container.on('sleep', (id) => id === a!.id && r(id)));
      await client.destroy(b!).catch(() => undefined);
      await waking;
      expect((await client.budget()).used.awake).toBe(container.supervisor.get(a!.id)?.worker ? 1 : 0);
      expect(await client.at(a!, () => 'room')).toBe('room');
      expect((await client.budget()).used.awake).toBe(1);
    } finally {
      await client.close();
    }
  });

  it('an eval cannot hold more than 64 ctx requests in flight', async () => {
    const { client } = await startContainer();
    const slow = await client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const node = await client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [slow.url], timeoutMs: 30_000 } });
    // Calls to a node that takes its time: they queue there, so they are all in flight at once.
    const codes = await client.at(
      node,
      async (ctx, target: string) => {
        const all = await Promise.allSettled(Array.from({ length: 100 }, () => ctx.at(target, () => { const t = Date.now(); while (Date.now() - t < 5); })));
        return all.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code: string }).code));
      },
      slow.url,
    );
    expect(codes.filter((c) => c === 'ok').length).toBeGreaterThanOrEqual(64);
    expect(codes.filter((c) => c !== 'ok').every((c) => c === 'ERR_OVERLOADED')).toBe(true);
    expect(codes).toContain('ERR_OVERLOADED');
  });

  it('values MessagePack would reshape are refused, not silently changed (Map and Set travel as themselves)', async () => {
    const { client } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.root() });
    expect(await client.at(node, () => new Map([[1, 2]]))).toEqual(new Map([[1, 2]]));
    expect(await codeOf(client.at(node, () => new (class Point { x = 1 })()))).toBe('ERR_RESULT');
    expect(await codeOf(client.at(node, (ctx) => ({ v: ctx.ref('v').get() })))).toBe('ERR_RESULT');
    await client.at(node, (ctx) => ctx.ref('v').set(new Set([1])));
    expect(await client.at(node, (ctx) => ctx.ref('v').get())).toEqual(new Set([1]));
    expect(await codeOf(client.at(node, (_ctx, m: unknown) => m, new (class Registry extends Map {})() as unknown))).toBe('ERR_RESULT');
    expect(await client.at(node, () => ({ when: new Date(0), bytes: new Uint8Array([1]), list: [null, 'a'] }))).toEqual({ when: new Date(0), bytes: new Uint8Array([1]), list: [null, 'a'] });
  });

  it("a node's lease check may only call what the node itself may", async () => {
    const { client } = await startContainer();
    const parent = await client.spawn({ lifetime: Lifetime.root(), budget: { maxNodes: 2 }, sandbox: { spawn: { lifetimes: ['leased'] } } });
    const code = await client.at(parent, async (ctx) => {
      try {
        await ctx.spawn({ lifetime: ctx.Lifetime.leased(1, { node: 'http://127.0.0.1:9/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', fn: () => true }) });
        return 'spawned';
      } catch (e) {
        return (e as { code: string }).code;
      }
    });
    expect(code).toBe('ERR_SANDBOX');
    expect(await client.at(parent, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.leased(1, { node: ctx.here, fn: () => true }) }).then(() => 'ok'))).toBe('ok');
  });

  it('strangers cannot make the container hold more request bodies than its budget', async () => {
    const { url, client, container } = await startContainer({ maxInflightBytes: 4 * 1024 * 1024, maxBodyBytes: 2 * 1024 * 1024, maxMessageBytes: 1024 * 1024 });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    const { port } = new URL(url);
    const sockets: Socket[] = [];
    try {
      const answers = await Promise.all(
        Array.from({ length: 4 }, () => new Promise<string>((resolve) => {
          const s = netConnect(Number(port), '127.0.0.1', () => {
            s.write(`POST /${node.id} HTTP/1.1\r\nHost: x\r\nContent-Length: ${2 * 1024 * 1024}\r\n\r\n`);
            s.write(Buffer.alloc(1536 * 1024)); // most of a body, and then nothing
          });
          sockets.push(s);
          let got = '';
          s.on('data', (d: Buffer) => (got += d.toString('latin1')));
          s.on('close', () => resolve(got));
          setTimeout(() => resolve(got), 3000).unref();
        })),
      );
      // Past 4 MiB held, the next bodies are refused at once.
      expect(answers.filter((a) => a.startsWith('HTTP/1.1 429')).length).toBeGreaterThanOrEqual(1);
      expect(await client.at(node, () => 'serving')).toBe('serving');
      expect(container.status).toBe('open');
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});

describe('data directory', () => {
  it('is made private on start: a directory others could read gets mode 700, and so does the store inside it', async () => {
    const data = await tempDir();
    await chmod(data, 0o755);
    await mkdir(join(data, 'db'), { mode: 0o755 });
    await chmod(join(data, 'db'), 0o755);
    const { client } = await startContainer({ data });
    await client.spawn({ lifetime: Lifetime.root() });
    expect((await stat(data)).mode & 0o777).toBe(0o700);
    expect((await stat(join(data, 'db'))).mode & 0o777).toBe(0o700);
    for (const key of ['operator.key', 'master.key']) expect((await stat(join(data, key))).mode & 0o077).toBe(0);
  });
});
