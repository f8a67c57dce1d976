/**
 * Access is decided again when an eval starts. A principal removed from a node's ACL has none of its
 * queued evals run after the removal is committed (each fails with ERR_ACCESS_DENIED); other principals'
 * evals, queued around them, run as before.
 */
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type Client, type KeynodeError } from 'keynode';
import { defer, startContainer, until } from '../helpers/containers.js';
import { hangingServer } from '../helpers/hanging-server.js';

async function principal(url: string): Promise<Client> {
  const c = await connect(url, { identity: Identity.generate(), connections: 64 });
  defer(() => c.close());
  return c;
}

const outcome = (p: Promise<unknown>) => p.then(() => 'ran', (e: unknown) => (e as KeynodeError).code ?? String(e));

describe('revoked access', () => {
  it("stops the revoked principal's queued evals at the head of the queue; others' run", async () => {
    const { url, client: owner, container } = await startContainer();
    const hang = await hangingServer();
    const p = await principal(url);
    const q = await principal(url);
    const node = await owner.spawn({ lifetime: Lifetime.root(), acl: [p.here.id, q.here.id], sandbox: { contacts: 'any', timeoutMs: 60_000 } });
    // Both may run code on it now.
    expect(await p.at(node.url, () => 'p')).toBe('p');
    expect(await q.at(node.url, () => 'q')).toBe('q');

    // The owner's eval holds the node (a call to a server that never answers) while the others queue up.
    const target = `${hang.url}/${Identity.generate().id}`;
    const holding = owner.at(node, async (ctx, to: string) => ctx.at(to, () => 1).catch(() => 'released'), target);
    await until(() => hang.open === 1, 30_000, 'the owner\'s eval to hold the node');
    const bump = async (ctx: { ref(name: string): { get(): Promise<unknown>; set(v: unknown): Promise<void> } }, name: string) => {
      const ref = ctx.ref(name);
      await ref.set(((await ref.get()) as number | null ?? 0) + 1);
    };
    const queued = Array.from({ length: 40 }, (_, i) => outcome((i % 2 ? p : q).at(node.url, bump, i % 2 ? 'p' : 'q')));
    await until(() => (container.supervisor.get(node.id)?.queue.length ?? 0) === 40, 30_000, 'forty evals to queue');

    await owner.update(node, { acl: [q.here.id] }); // P is revoked: committed when this returns
    hang.release();
    expect(await holding).toBe('released');
    const outcomes = await Promise.all(queued);
    expect(outcomes.filter((_, i) => i % 2 === 1)).toEqual(Array(20).fill('ERR_ACCESS_DENIED'));
    expect(outcomes.filter((_, i) => i % 2 === 0)).toEqual(Array(20).fill('ran'));

    // Side effects counted: none of P's ran, all of Q's did.
    expect(await owner.at(node, async (ctx) => [await ctx.ref('p').get(), await ctx.ref('q').get()])).toEqual([null, 20]);
    expect(await outcome(p.at(node.url, () => 'again'))).toBe('ERR_ACCESS_DENIED');
  });
});
