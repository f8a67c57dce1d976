/**
 * Private keys never cross the wire readable: every byte of spawn exchanges (keys the container makes, and
 * keys the client chooses to bind capabilities it signs) and of a destroy signed by a node's own key is kept
 * by a TCP proxy, and no key appears in it, in any of the encodings a careless implementation would use. And the container refuses a seed sent in clear.
 */
import { describe, expect, it } from 'vitest';
import { connect, Lifetime, type KeynodeError } from 'keynode';
import { encode } from '../../dist/protocol/index.js';
import { defer, startContainer } from '../helpers/containers.js';
import { tapProxy } from '../helpers/wire.js';

function encodings(key: Uint8Array): Buffer[] {
  const b = Buffer.from(key);
  return [b, Buffer.from(b.toString('hex')), Buffer.from(b.toString('base64')), Buffer.from(b.toString('base64url')), Buffer.from(encode(key)), b.subarray(0, 16), b.subarray(16)];
}

describe('keys on the wire', () => {
  it('no spawn exchange, destroy or release carries a private key readable', async () => {
    const c = await startContainer();
    const proxy = await tapProxy(Number(new URL(c.url).port));
    const client = await connect(proxy.url, { identity: c.operator });
    defer(() => client.close());

    // Keys the container makes, one and many.
    const one = await client.spawn({ lifetime: Lifetime.root() });
    const many = await client.spawnMany(20, { lifetime: Lifetime.root() });
    // Keys the client chooses: it binds a capability on a node whose key it holds, so it signs each grant.
    const home = one;
    const guests = await client.spawnMany(5, { lifetime: Lifetime.root(), sandbox: { capabilities: { whoami: { node: home, fn: (ctx) => ctx.here.id } } } });
    expect(await client.at(guests[0]!.id, (ctx) => ctx.caps.whoami())).toBe(home.id);
    // A destroy signed by the node's own key.
    await client.destroy(many[0]!);
    const secrets = [one, ...many, ...guests].map((h) => h.exportSecretKey()!);
    expect(secrets.every((k) => k.length === 32)).toBe(true);
    secrets.push(c.operator.exportSecretKey());

    const wire = Buffer.concat([...proxy.up, ...proxy.down]);
    expect(wire.length).toBeGreaterThan(1000);
    const found: string[] = [];
    for (const [i, key] of secrets.entries()) for (const [j, form] of encodings(key).entries()) if (wire.includes(form)) found.push(`key ${i} in form ${j}`);
    expect(found).toEqual([]);
  });

  it('a seed sent in clear is refused, and nothing is spawned', async () => {
    const c = await startContainer();
    const before = ((await c.client.request('budget', {})) as { used: { nodes: number } }).used.nodes;
    const err = (await c.client.request('spawn', { lifetime: { kind: 'root' }, keys: [{ seed: new Uint8Array(32).fill(7) }] } as never).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_BAD_MESSAGE');
    expect(err.message).toMatch(/never travels in clear/);
    expect(((await c.client.request('budget', {})) as { used: { nodes: number } }).used.nodes).toBe(before);
  });

  it('a spawn that names no key to seal to gets no private keys back at all', async () => {
    const c = await startContainer();
    const reply = (await c.client.request('spawn', { lifetime: { kind: 'root' }, count: 2 } as never)) as Record<string, unknown> & { nodes: Record<string, unknown>[] };
    expect(reply.keys).toBeUndefined();
    expect(reply.nodes.map((n) => Object.keys(n).sort())).toEqual([['id', 'url'], ['id', 'url']]);
  });
});
