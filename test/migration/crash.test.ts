/**
 * kill -9 of the source or of the target in the middle of a move, at each phase that matters (each
 * container in its own process, held at the phase by KEYNODE_TEST_MOVE_PAUSE and killed when it logs
 * that it got there): after a restart the node is in exactly one place with its last acknowledged state,
 * and retrying the move finishes it.
 */
import { describe, expect, it } from 'vitest';
import { connect, KeynodeError, Lifetime, type Client } from 'keynode';
import { defer, type ContainerProcess } from '../helpers/containers.js';
import { fleetSpecs, startMember, type FleetProcessSpec } from '../helpers/fleet-local.js';

const SET = async (ctx: any, v: string) => ctx.ref('v').set(v);
const GET = async (ctx: any) => ctx.ref('v').get();

async function client(p: ContainerProcess): Promise<Client> {
  const c = await connect(p.url, { identity: p.operator });
  defer(() => c.close());
  return c;
}

/** A source and a target; the one named pauses every move at `phase`. */
async function pair(pauser: 'source' | 'target', phase: string): Promise<{ specs: FleetProcessSpec[]; source: ContainerProcess; target: ContainerProcess }> {
  const specs = await fleetSpecs(2);
  const env = { KEYNODE_TEST_MOVE_PAUSE: phase };
  const target = await startMember(specs[1]!, pauser === 'target' ? env : {});
  const source = await startMember(specs[0]!, pauser === 'source' ? env : {});
  return { specs, source, target };
}

/** Starts a move that will hang at the pause; waits for the line, kills the pauser, returns the move's outcome. */
async function killAt(mover: Client, node: string, to: string, pauser: ContainerProcess, phase: string): Promise<KeynodeError | undefined> {
  const paused = pauser.logged('move paused', (r) => r.phase === phase);
  const move = mover.move(node, to).then(() => undefined, (e: KeynodeError) => e);
  await paused;
  await pauser.kill9();
  return move;
}

// Each test starts, kills and restarts container processes: minutes on a loaded 2-core machine.
describe('crash in the middle of a move', { timeout: 240_000 }, () => {
  it('source killed after the target prepared, before its forwarding record: the node stays on the source; a retry moves its latest state', async () => {
    const { specs, source, target } = await pair('source', 'prepared');
    const s = await client(source);
    const node = await s.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite', timeoutMs: 10_000 } });
    await s.at(node, SET, 'v1');
    expect((await killAt(s, node.url, target.url, source, 'prepared'))?.code).toBe('ERR_UNAVAILABLE');
    const again = await startMember(specs[0]!);
    const s2 = await client(again);
    expect(await s2.at(node, GET)).toBe('v1');
    expect(s2.urlOf(node)).toBe(node.url);
    // The target holds a copy it must never serve: asked there, it sends the caller to the source.
    const viaTarget = await connect(target.url, { identity: again.operator });
    defer(() => viaTarget.close());
    expect(await viaTarget.at(`${target.url}/${node.id}`, GET)).toBe('v1');
    expect(viaTarget.urlOf(node.id)).toBe(node.url);
    await s2.at(node, SET, 'v2');
    const moved = await s2.move(node, target.url);
    expect(moved.url).toBe(`${target.url}/${node.id}`);
    expect(await s2.at(node, GET)).toBe('v2');
  });

  it('source killed after its forwarding record: the target serves the node (asked first, it activates itself), and a retry finishes the move', async () => {
    const { specs, source, target } = await pair('source', 'forwarded');
    const s = await client(source);
    const node = await s.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite', timeoutMs: 10_000, spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 1 } });
    await s.at(node, SET, 'v1');
    const kid = await s.at(node, async (ctx) => {
      const k = await ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { refs: 'readwrite' }, acl: [ctx.caller] });
      await ctx.at(k, async (x: any) => x.ref('v').set('kid'));
      return k.url as string;
    });
    await killAt(s, node.url, target.url, source, 'forwarded');
    const again = await startMember(specs[0]!);
    const s2 = await client(again);
    // Through the child's old URL first: the source redirects, the target finds the child's move, asks the
    // source, sees it committed, and activates the whole move.
    expect(await s2.at(kid, GET)).toBe('kid');
    expect(await s2.at(node.url, GET)).toBe('v1');
    expect(s2.urlOf(node)).toBe(`${target.url}/${node.id}`);
    const retry = await s2.move(node.url, target.url);
    expect(retry.url).toBe(`${target.url}/${node.id}`);
    await s2.at(node, SET, 'v2');
    const fresh = await client(again);
    expect(await fresh.at(node.url, GET)).toBe('v2');
  });

  it('target killed after it prepared, before it answered: the source keeps the node; a retry moves it', async () => {
    const { specs, source, target } = await pair('target', 'target-prepared');
    const s = await client(source);
    const node = await s.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite', timeoutMs: 10_000 } });
    await s.at(node, SET, 'v1');
    expect((await killAt(s, node.url, target.url, target, 'target-prepared'))?.code).toBe('ERR_UNAVAILABLE');
    expect(await s.at(node, GET)).toBe('v1');
    expect(s.urlOf(node)).toBe(node.url);
    await s.at(node, SET, 'v2');
    const t2 = await startMember(specs[1]!);
    const moved = await s.move(node, t2.url);
    expect(moved.url).toBe(`${t2.url}/${node.id}`);
    expect(await s.at(node, GET)).toBe('v2');
  });

  it('target killed as it activates: the node is the target\'s (never the source\'s again); after a restart a retry activates it', async () => {
    const { specs, source, target } = await pair('target', 'target-activating');
    const s = await client(source);
    const node = await s.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'readwrite', timeoutMs: 10_000 } });
    await s.at(node, SET, 'v1');
    expect((await killAt(s, node.url, target.url, target, 'target-activating'))?.code).toBe('ERR_UNAVAILABLE');
    // The source has handed it over: it redirects, and the target is down, so the call cannot run anywhere.
    const down = await s.at(node.url, GET).catch((e: KeynodeError) => e);
    expect((down as KeynodeError).code).toBe('ERR_UNAVAILABLE');
    const t2 = await startMember(specs[1]!);
    const retry = await s.move(node.url, t2.url);
    expect(retry.url).toBe(`${t2.url}/${node.id}`);
    expect(await s.at(node.url, GET)).toBe('v1');
  });
});
