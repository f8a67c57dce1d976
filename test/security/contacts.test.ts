/**
 * A node whose sandbox.contacts pin where its calls may go must not get them anywhere else through what it
 * makes the container do for it: a child's contacts, a child's lease check, a change to a child's sandbox.
 * Every attack here aims at a plain HTTP server on 127.0.0.1 that records whether it was ever contacted, and
 * at the same node ID as a listed contact (so a check that compares IDs only would let it through).
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connect, Lifetime, type Client, type KeynodeError, type NodeHandle } from 'keynode';
import { defer, startContainer, until, type TestContainer } from '../helpers/containers.js';

/** A server that is no keynode container: it records every request (and its body) and answers 404. */
async function evilServer(): Promise<{ origin: string; received: string[] }> {
  const received: string[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push(`${req.method} ${req.url} ${Buffer.concat(chunks).toString('latin1')}`);
      res.statusCode = 404;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(() => new Promise((resolve) => server.close(resolve)));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

async function failure(p: Promise<unknown>): Promise<KeynodeError> {
  return p.then((v) => {
    throw new Error(`expected the call to fail, but it returned ${JSON.stringify(v)}`);
  }, (e: unknown) => e as KeynodeError);
}

/** A client that signs as the node (its spawner's handle holds the key): it can do what the node can, no more. */
async function asNode(c: TestContainer, node: NodeHandle): Promise<Client> {
  const client = await connect(c.url, { identity: node.identity()! });
  defer(() => client.close());
  return client;
}

const SECRET = 'the-secret-passed-as-an-argument';

/** Inside the parent: spawn a child with `spec`, then have the child call `target` with the secret. */
function spawnAndCall(client: Client, parent: NodeHandle, spec: unknown, target: string): Promise<unknown> {
  return client.at(
    parent,
    async (ctx, s: never, t: string, secret: string) => {
      const kid = await ctx.spawn(s);
      return ctx.at(kid, (c, to: string, sec: string) => c.at(to, (_x, v: string) => v, sec), t, secret);
    },
    spec,
    target,
    SECRET,
  );
}

describe('contacts cannot be escaped through what a node makes the container do', () => {
  it("a child's contacts are compared with the parent's by origin and ID, at spawn and at update", async () => {
    const a = await startContainer();
    const b = await startContainer();
    const evil = await evilServer();
    const far = await b.client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const evilFar = `${evil.origin}/${far.id}`;

    // Pinned to the node on B by URL, and (a second parent) by ID, which admits only a node on this container.
    const byUrl = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [far.url], spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 4 } });
    const byId = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [far.id], spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 4 } });
    for (const parent of [byUrl, byId]) {
      const direct = await failure(a.client.at(parent, (ctx, t: string, s: string) => ctx.at(t, (_c, v: string) => v, s), evilFar, SECRET));
      expect(direct.code).toBe('ERR_SANDBOX');
      const viaChild = await failure(spawnAndCall(a.client, parent, { lifetime: { kind: 'linked' }, sandbox: { contacts: [evilFar] } }, evilFar));
      expect({ parent: parent.id, code: viaChild.code }).toEqual({ parent: parent.id, code: 'ERR_SANDBOX' });
    }
    // The same listed URL is still fine, and reaches B.
    expect(await spawnAndCall(a.client, byUrl, { lifetime: { kind: 'linked' }, sandbox: { contacts: [far.url] } }, far.url)).toBe(SECRET);

    // A parent that changes its child's sandbox later obeys the same rule (the client signs as the parent node).
    const parentClient = await asNode(a, byUrl);
    const [kid] = await parentClient.spawnMany(1, { lifetime: Lifetime.linked(), sandbox: { contacts: [far.url] } });
    const widened = await failure(parentClient.update(kid!, { sandbox: { contacts: [evilFar] } }));
    expect(widened.code).toBe('ERR_SANDBOX');
    expect((await a.client.describe(kid!)).sandbox.contacts).toEqual([far.url]);
    const spawned = await failure(parentClient.spawnMany(1, { lifetime: Lifetime.linked(), sandbox: { contacts: [evilFar] } }));
    expect(spawned.code).toBe('ERR_SANDBOX');

    expect(evil.received).toEqual([]);
  });

  it("a child's lease check calls only where its parent may, matched by origin and ID (and exactly, for a capability)", async () => {
    const a = await startContainer();
    const b = await startContainer();
    const evil = await evilServer();
    const far = await b.client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const evilFar = `${evil.origin}/${far.id}`;
    const check = '(ctx, n) => n === 1';

    const listed = await a.client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [far.url], spawn: { lifetimes: ['leased'] } }, budget: { maxNodes: 4 } });
    // No contacts, but a capability on the far node with bound arguments (the client holds its key and signs).
    const capped = await a.client.spawn({
      lifetime: Lifetime.root(),
      sandbox: { spawn: { lifetimes: ['leased'] }, capabilities: { alive: { node: far, fn: check, args: [1] } } },
      budget: { maxNodes: 4 },
    });

    const leaseOn = (node: string) => ({ lifetime: { kind: 'leased', seconds: 0.05, check: { node, fn: check } } });
    for (const parent of [listed, capped]) {
      const err = await failure(a.client.at(parent, (ctx, s: never) => ctx.spawn(s), leaseOn(evilFar)));
      expect({ parent: parent.id, code: err.code }).toEqual({ parent: parent.id, code: 'ERR_SANDBOX' });
    }
    // The capability's node with other arguments would be an unbound call: not the capability, so refused too.
    const otherArgs = await failure(a.client.at(capped, (ctx, s: never) => ctx.spawn(s), leaseOn(far.url)));
    expect(otherArgs.code).toBe('ERR_SANDBOX');
    // Signed as the node, with a grant the client made for the chosen key: still within the parent's contacts only.
    const cappedClient = await asNode(a, capped);
    const granted = await failure(cappedClient.spawn({ lifetime: Lifetime.leased(0.05, { node: b.client.node(evilFar, far.exportSecretKey()), fn: check }) }));
    expect(granted.code).toBe('ERR_SANDBOX');

    // What the parent may reach works: a listed contact, and exactly its capability (passed down with its grant).
    const renewed = new Set<string>();
    a.container.on('lease', (id: string, verdict: string) => verdict === 'renewed' && renewed.add(id));
    const viaContact = (await a.client.at(listed, (ctx, s: never) => ctx.spawn(s), { lifetime: { kind: 'leased', seconds: 0.05, check: { node: far.url, fn: '() => true' } } })) as { id: string };
    const viaCap = await cappedClient.spawn({ lifetime: Lifetime.leased(0.05, { node: far.url, fn: check, args: [1] }) });
    await until(() => renewed.has(viaContact.id) && renewed.has(viaCap.id), 20_000, 'both leases renewed through B');

    expect(evil.received).toEqual([]);
  });
});
