/**
 * Code by hash: a function's source travels to a container once, then its SHA-256 alone; a container (or a
 * worker) that does not have the function says so and gets the source once, without the caller noticing,
 * and the function runs exactly once. The container's cache of sources is bounded in entries and bytes.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { connect, Lifetime } from 'keynode';
import { codeHash, encode, decode } from '../../dist/protocol/index.js';
import { CodeCache } from '../../dist/container/edge/code-cache.js';
import { defer, startContainer } from '../helpers/containers.js';
import { handshake, kindOf, post, rewritingProxy } from '../helpers/wire.js';

const PADDING = 'x'.repeat(20_000);
const TURNCOAT = fileURLToPath(new URL('../fixtures/turncoat-wrapper.sh', import.meta.url));

describe('code by hash', () => {
  it('a function travels once; later evals carry only its hash, and a forgotten hash is resent with the source, transparently', async () => {
    const c = await startContainer();
    const proxy = await rewritingProxy(c.url, (reply) => reply);
    const client = await connect(proxy.url, { identity: c.operator });
    defer(() => client.close());
    const node = await client.spawn({ lifetime: Lifetime.root() });
    // A big function: the padding is in its source (a comment), so it is what travels.
    const source = `async (ctx) => { /* ${PADDING} */ const r = ctx.ref("n"); const n = ((await r.get()) ?? 0) + 1; await r.set(n); return n; }`;
    const fn = new Function(`return (${source})`)() as (ctx: unknown) => Promise<number>;
    const sizes = (from: number) => proxy.requests.slice(from).filter((b) => kindOf(b) === 'session').map((b) => b.length);
    let mark = proxy.requests.length;
    expect(await client.at(node.id, fn)).toBe(1);
    expect(sizes(mark)).toHaveLength(1);
    expect(sizes(mark)[0]).toBeGreaterThan(PADDING.length);
    mark = proxy.requests.length;
    for (let i = 2; i <= 4; i++) expect(await client.at(node.id, fn)).toBe(i);
    expect(sizes(mark).every((n) => n < 1024)).toBe(true);

    // A client that believes the container has a function it never got: one request by hash, refused with
    // ERR_UNKNOWN_CODE, then one with the source; the function runs once.
    const other = await connect(proxy.url, { identity: c.operator });
    defer(() => other.close());
    const inc = async (ctx: { ref(n: string): { get(): Promise<unknown>; set(v: unknown): Promise<void> } }) => {
      const r = ctx.ref('m');
      const n = (((await r.get()) as number | undefined) ?? 0) + 1;
      await r.set(n);
      return n;
    };
    (await other.channel()).learnedCode(codeHash(Function.prototype.toString.call(inc)));
    mark = proxy.requests.length;
    expect(await other.at(node.id, inc)).toBe(1);
    expect(sizes(mark)).toHaveLength(2);
    expect(sizes(mark)[1]).toBeGreaterThan(sizes(mark)[0]!);
    expect(await other.at(node.id, (ctx) => ctx.ref('m').get())).toBe(1);
  });

  it('an eval naming an unknown or malformed hash is refused (MACed) and runs nothing', async () => {
    const c = await startContainer();
    const node = await c.client.spawn({ lifetime: Lifetime.root() });
    const s = await handshake(c.url, c.container.id, c.operator);
    const unknown = s.frame('eval', node.id, { h: codeHash('() => "never sent"'), args: encode([]) });
    const answer = await post(c.url, `/${node.id}`, unknown.bytes);
    expect({ status: answer.status, code: answer.code }).toEqual({ status: 409, code: 'ERR_UNKNOWN_CODE' });
    expect(s.authentic(answer, unknown.mac)).toBe(true);
    for (const h of ['', 'abc', 'G'.repeat(64), codeHash('x').toUpperCase(), 42, new Uint8Array(32)]) {
      expect((await post(c.url, `/${node.id}`, s.frame('eval', node.id, { h, args: encode([]) }).bytes)).code, String(h)).toBe('ERR_BAD_MESSAGE');
    }
    // The hash is always the container's own: the source sent with a hash of something else runs as itself.
    const mixed = await post(c.url, `/${node.id}`, s.frame('eval', node.id, { fn: '() => "the source"', h: codeHash('() => "other"'), args: encode([]) }).bytes);
    expect(decode(mixed.value as Uint8Array)).toBe('the source');
    expect((await post(c.url, `/${node.id}`, s.frame('eval', node.id, { h: codeHash('() => "other"'), args: encode([]) }).bytes)).code).toBe('ERR_UNKNOWN_CODE');
  });

  it('a worker named a function it has not compiled gets the source, and runs it once', async () => {
    const c = await startContainer();
    const node = await c.client.spawn({ lifetime: Lifetime.root() });
    await c.client.at(node, () => 'awake');
    const inc = async (ctx: { ref(n: string): { get(): Promise<unknown>; set(v: unknown): Promise<void> } }) => {
      const r = ctx.ref('k');
      const n = (((await r.get()) as number | undefined) ?? 0) + 1;
      await r.set(n);
      return n;
    };
    // The container's guess of what the worker has compiled is wrong: it sends this function by hash alone.
    c.container.supervisor.get(node.id)!.code.add(codeHash(Function.prototype.toString.call(inc)));
    expect(await c.client.at(node, inc)).toBe(1);
    expect(await c.client.at(node, inc)).toBe(2);
    expect(await c.client.at(node, (ctx) => ctx.ref('k').get())).toBe(2);
  });

  it('an eval that started never answers ERR_UNKNOWN_CODE (which would make the client send it again)', async () => {
    const c = await startContainer({ poolMin: 0, workerWrapper: TURNCOAT });
    const proxy = await rewritingProxy(c.url, (reply) => reply);
    const client = await connect(proxy.url, { identity: c.operator });
    defer(() => client.close());
    const node = await client.spawn({ lifetime: Lifetime.root() });
    // It waits on the container once (a ref read), so the turncoat's answer goes out while it runs.
    const fn = async (ctx: { ref(n: string): { get(): Promise<unknown> } }, tag: string) => {
      await ctx.ref('x').get();
      return `ran with ${tag}`;
    };
    expect(await client.at(node.id, fn, 'warm')).toBe('ran with warm'); // the source travels; then the hash
    const mark = proxy.requests.length;
    // The worker (a turncoat) starts the eval by hash, then claims it never had the function.
    const err = (await client.at(node.id, fn, 'TURNCOAT:unknown-code').catch((e: unknown) => e)) as { code?: string };
    expect(err.code).toBe('ERR_UNAVAILABLE');
    expect(proxy.requests.slice(mark).map(kindOf)).toEqual(['session']); // not sent again
  });

  it('the cache of sources is bounded in entries and bytes, least recently used out first', () => {
    const cache = new CodeCache(5, 1000);
    const hs = Array.from({ length: 10 }, (_, i) => cache.add(`() => ${i}`));
    expect(cache.size).toBe(5);
    expect(() => cache.get(hs[0]!)).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_CODE' }) as never);
    cache.get(hs[5]!); // used: now the most recent
    cache.add('() => 10');
    expect(cache.get(hs[5]!)).toBe('() => 5');
    expect(() => cache.get(hs[6]!)).toThrow();
    // 2 bytes a character: 1000 bytes hold four sources of 120 characters, not five.
    const bytes = new CodeCache(100, 1000);
    const long = (c: string) => bytes.add(c.repeat(120));
    const [v, w, x, y, z] = [long('a'), long('b'), long('c'), long('d'), long('e')];
    expect(bytes.size).toBe(4);
    expect(() => bytes.get(v)).toThrow();
    for (const h of [w, x, y, z]) expect(bytes.get(h)).toHaveLength(120);
    // A source too big to be worth evicting many others for (over a quarter of the bytes) is not kept at all.
    const huge = bytes.add('h'.repeat(200));
    expect(() => bytes.get(huge)).toThrow();
    expect(bytes.size).toBe(4);
  });
});
