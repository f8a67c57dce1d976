/**
 * The fleet client's choice of member (client/placement.ts), against load reports made up here: hot
 * members rank last, room is respected, a burst spreads between reports, and the errors say why.
 */
import { describe, expect, it } from 'vitest';
import { Identity, type KeynodeError, type LoadReport } from 'keynode';
import { checkLoadReport } from '../../dist/protocol/index.js';
import { Placer } from '../../dist/client/placement.js';

type Shape = { awake?: number; maxAwake?: number; memoryMB?: number; queued?: number; room?: { maxNodes: number; nodes: number } | null };

function report(url: string, s: Shape): LoadReport {
  const { room = { maxNodes: 1000, nodes: 0 }, ...load } = s;
  return checkLoadReport({
    containerId: Identity.generate().id, url, awake: 0, maxAwake: 100, active: 0, queued: 0, memoryMB: 0, maxMemoryMB: 1000, nodesLeft: 1e6, members: [], ...load,
    ...(room ? { room: { ...room, maxAwake: 10, awake: 0 } } : {}),
  }, url);
}

async function placeAll(placer: Placer, count: number): Promise<Record<string, number>> {
  return Object.fromEntries(await placer.place(count));
}

describe('placement', () => {
  it('a hot member (awake or memory at 90% of capacity, or a deep queue) gets nothing while another has room', async () => {
    for (const hot of [{ awake: 95 }, { memoryMB: 950 }, { awake: 2, queued: 200 }]) {
      const shapes: Record<string, Shape> = { 'http://hot:1': hot, 'http://cool:1': { room: { maxNodes: 50, nodes: 0 } } };
      const placer = new Placer(Object.keys(shapes), async (url) => report(url, shapes[url]!), 60_000);
      expect(await placeAll(placer, 50)).toEqual({ 'http://cool:1': 50 });
      // Once the cool one is full, the hot one takes what is left rather than refusing.
      expect(await placeAll(placer, 10)).toEqual({ 'http://hot:1': 10 });
    }
  });

  it('one burst between reports spreads evenly: the client counts what it placed itself', async () => {
    const urls = ['http://a:1', 'http://b:1', 'http://c:1'];
    let asked = 0;
    const placer = new Placer(urls, async (url) => (asked++, report(url, { room: { maxNodes: 100_000, nodes: 0 } })), 60_000);
    const plan = await placeAll(placer, 3000);
    expect(asked).toBe(3);
    for (const url of urls) expect(Math.abs(plan[url]! - 1000)).toBeLessThan(100);
  });

  it('fills members to their room and no further; past every member\'s room it says so for each', async () => {
    const shapes: Record<string, Shape> = { 'http://a:1': { room: { maxNodes: 10, nodes: 7 } }, 'http://b:1': { room: { maxNodes: 5, nodes: 0 } }, 'http://c:1': { room: null } };
    const placer = new Placer(Object.keys(shapes), async (url) => report(url, shapes[url]!), 60_000);
    expect(await placeAll(placer, 8)).toEqual({ 'http://a:1': 3, 'http://b:1': 5 });
    const err = (await placer.place(1).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_BUDGET_EXHAUSTED');
    expect(err.message).toContain('http://a:1: 0 nodes left');
    expect(err.message).toContain('http://c:1: no budget for this client');
  });

  it('with no member answering, the error is ERR_UNAVAILABLE naming each and why', async () => {
    const placer = new Placer(['http://a:1', 'http://b:1'], async (url) => {
      throw Object.assign(new Error(`cannot reach ${url}`), { code: 'ERR_UNAVAILABLE' });
    }, 60_000);
    const err = (await placer.place(1).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_UNAVAILABLE');
    expect(err.message).toMatch(/http:\/\/a:1: ERR_UNAVAILABLE: cannot reach http:\/\/a:1.*http:\/\/b:1/);
  });

  it('learns the members that reports say are up, and only those', async () => {
    const many = Array.from({ length: 256 }, (_, i) => ({ url: `http://m${i}:1`, state: i % 2 ? 'up' : 'down' }));
    const placer = new Placer(['http://seed:1'], async (url) => checkLoadReport({ ...report(url, {}), members: url === 'http://seed:1' ? many : [] }, url), 60_000);
    await placer.refresh();
    const urls = placer.members().map((m) => m.url);
    expect(urls).toContain('http://m1:1');
    expect(urls).not.toContain('http://m0:1');
    expect(urls.length).toBe(1 + 128);
  });
});
