import { describe, expect, it } from 'vitest';
import { connect, Lifetime, type Client, type Ctx } from 'keynode';
import { defer, startContainer } from '../helpers/containers.js';
import { allNodes, childrenOf, failure } from './util.js';

async function newClient(url: string): Promise<Client> {
  const c = await connect(url);
  defer(() => c.close());
  return c;
}

/** The one thing the guest may do with the owner's state. */
const readHomeAddress = (ctx: Ctx) => ctx.ref<string>('homeAddress').get();

interface Movie {
  title: string;
  year: number;
}

/** Runs on the owner: validates as it appends, so bad input part-way through proves the rollback too. */
const appendMovies = async (ctx: Ctx, movies: Movie[]) => {
  if (!Array.isArray(movies) || movies.length === 0) throw new TypeError('expected a non-empty list of { title, year }');
  const index = ctx.index<Movie>('movies');
  for (const m of movies) {
    const ok = typeof m === 'object' && m !== null && Object.keys(m).length === 2 && typeof m.title === 'string' && m.title.length > 0 && m.title.length <= 200 && Number.isInteger(m.year) && m.year >= 1888 && m.year <= 2100;
    if (!ok) throw new TypeError('each movie is { title: string, year: number }');
    await index.put(`${m.year}:${m.title}`, { title: m.title, year: m.year });
  }
  return movies.length;
};

describe('capabilities: the seed 003 stories', () => {
  it('home address: a third party reads exactly one ref of the owner through a guest, and nothing else', async () => {
    const { url, client: owner } = await startContainer();
    const third = await newClient(url);
    const home = await owner.spawn({ lifetime: Lifetime.root() });
    await owner.at(home, async (ctx) => {
      await ctx.ref('homeAddress').set('12 Elm Street');
      await ctx.ref('diary').set('private thoughts');
    });
    const guest = await owner.spawn({
      lifetime: Lifetime.root(),
      sandbox: { capabilities: { readHomeAddress: { node: home, fn: readHomeAddress } } },
      acl: [third.here],
    });

    expect(await third.at(guest, (ctx) => ctx.caps.readHomeAddress())).toBe('12 Elm Street');
    await owner.at(home, (ctx) => ctx.ref('homeAddress').set('7 Oak Avenue'));
    expect(await third.at(guest, (ctx) => ctx.caps.readHomeAddress())).toBe('7 Oak Avenue');

    // Only the capabilities that were bound exist.
    expect(await third.at(guest, (ctx) => Object.keys(ctx.caps))).toEqual(['readHomeAddress']);
    const noSuchCap = await failure(third.at(guest, (ctx) => (ctx.caps as Record<string, () => Promise<unknown>>).readDiary!()));
    expect(noSuchCap.code).toBe('ERR_USER');

    // The guest cannot reach the owner any other way: no contacts...
    const direct = await failure(third.at(guest, (ctx, target: string) => ctx.at(target, (c) => c.ref('diary').get()), home.url));
    expect(direct.code).toBe('ERR_SANDBOX');
    // ...and with contacts 'any', the owner's ACL still says no.
    const wide = await owner.spawn({
      lifetime: Lifetime.root(),
      sandbox: { contacts: 'any', capabilities: { readHomeAddress: { node: home, fn: readHomeAddress } } },
      acl: [third.here],
    });
    expect(await third.at(wide, (ctx) => ctx.caps.readHomeAddress())).toBe('7 Oak Avenue');
    const acl = await failure(third.at(wide, (ctx, target: string) => ctx.at(target, (c) => c.ref('diary').get()), home.url));
    expect(acl.code).toBe('ERR_ACCESS_DENIED');

    // The third party cannot eval on the owner's node itself.
    const itself = await failure(third.at(home, (ctx) => ctx.ref('diary').get()));
    expect(itself.code).toBe('ERR_ACCESS_DENIED');
    // Another stranger is not on the guest's ACL.
    const stranger = await newClient(url);
    expect((await failure(stranger.at(guest, (ctx) => ctx.caps.readHomeAddress()))).code).toBe('ERR_ACCESS_DENIED');

    expect(await owner.at(home, (ctx) => ctx.ref('diary').get())).toBe('private thoughts');
  });

  it('a capability runs exactly its fn on the bound node, with that node\'s state, as the guest', async () => {
    const { client } = await startContainer();
    const home = await client.spawn({ lifetime: Lifetime.root() });
    const guest = await client.spawn({
      lifetime: Lifetime.root(),
      sandbox: { capabilities: { where: { node: home, fn: (ctx: Ctx, tag: string) => ({ ran: ctx.here.id, caller: ctx.caller, tag }) } } },
    });
    expect(await client.at(guest, (ctx) => ctx.caps.where('hello'))).toEqual({ ran: home.id, caller: guest.id, tag: 'hello' });
  });

  it('movie list: a friend may only append typed movies to the owner\'s index; bad input is refused and changes nothing', async () => {
    const { url, client: owner } = await startContainer();
    const friend = await newClient(url);
    const collection = await owner.spawn({ lifetime: Lifetime.root() });
    await owner.at(collection, (ctx) => ctx.index('movies').put('1968:2001: A Space Odyssey', { title: '2001: A Space Odyssey', year: 1968 }));
    const mailbox = await owner.spawn({
      lifetime: Lifetime.root(),
      sandbox: { refs: 'none', capabilities: { addMovies: { node: collection, fn: appendMovies } } },
      acl: [friend.here],
    });

    const added = await friend.at(mailbox, (ctx, movies: Movie[]) => ctx.caps.addMovies(movies), [
      { title: 'Alien', year: 1979 },
      { title: 'Arrival', year: 2016 },
    ]);
    expect(added).toBe(2);
    const merged = [
      { title: '2001: A Space Odyssey', year: 1968 },
      { title: 'Alien', year: 1979 },
      { title: 'Arrival', year: 2016 },
    ];
    const read = async () => (await owner.at(collection, (ctx) => ctx.index<Movie>('movies').entries())).map(([, v]) => v);
    expect(await read()).toEqual(merged);

    // Bad input, even after good entries in the same call: the owner's eval throws and its writes are dropped.
    const bad = [
      [{ title: 'Heat', year: 1995 }, { title: 'Ghost', year: 'nineteen ninety' }],
      [{ title: 'Heat', year: 1995, rating: 5 }],
      'not a list',
      [],
    ];
    for (const input of bad) {
      const err = await failure(friend.at(mailbox, (ctx, movies: unknown) => ctx.caps.addMovies(movies), input));
      expect(err.code).toBe('ERR_USER');
    }
    expect(await read()).toEqual(merged);

    // Append only: the friend can neither read the list through the mailbox nor reach the collection.
    const reach = await failure(friend.at(mailbox, (ctx, target: string) => ctx.at(target, (c) => c.index('movies').entries()), collection.url));
    expect(reach.code).toBe('ERR_SANDBOX');
    const own = await failure(friend.at(mailbox, (ctx) => ctx.ref('x').get()));
    expect(own.code).toBe('ERR_SANDBOX');
    const direct = await failure(friend.at(collection, (ctx) => ctx.index('movies').entries()));
    expect(direct.code).toBe('ERR_ACCESS_DENIED');
    expect(await read()).toEqual(merged);
  });

  it('cross-container: the owner on A, the guest on B, bound by a client holding the owner\'s key', async () => {
    const a = await startContainer();
    const b = await startContainer();
    const third = await newClient(b.url);
    const home = await a.client.spawn({ lifetime: Lifetime.root() });
    await a.client.at(home, (ctx) => ctx.ref('homeAddress').set('1 Harbour Road'));

    // B's client is given the owner's handle with its key: it signs the grant itself.
    const homeOnB = b.client.node(home.url, home.exportSecretKey());
    const guest = await b.client.spawn({
      lifetime: Lifetime.root(),
      sandbox: { capabilities: { readHomeAddress: { node: homeOnB, fn: readHomeAddress } } },
      acl: [third.here],
    });
    expect(await third.at(guest, (ctx) => ctx.caps.readHomeAddress())).toBe('1 Harbour Road');
    await a.client.at(home, (ctx) => ctx.ref('homeAddress').set('2 Harbour Road'));
    expect(await third.at(guest, (ctx) => ctx.caps.readHomeAddress())).toBe('2 Harbour Road');

    // Without the key, B's client cannot bind A's node; nothing is created.
    const count = (await allNodes(b.client)).length;
    const unsigned = await failure(
      b.client.spawn({ lifetime: Lifetime.root(), sandbox: { capabilities: { readHomeAddress: { node: b.client.node(home.url), fn: readHomeAddress } } } }),
    );
    expect(unsigned.code).toBe('ERR_ACCESS_DENIED');
    expect((await allNodes(b.client)).length).toBe(count);

    // The guest on B cannot reach the owner on A except through its capability.
    const reach = await failure(third.at(guest, (ctx, target: string) => ctx.at(target, (c) => c.ref('homeAddress').get()), home.url));
    expect(reach.code).toBe('ERR_SANDBOX');
  });

  it('binding a node the spawner cannot sign for is refused with ERR_ACCESS_DENIED and creates nothing', async () => {
    const { url, client: op } = await startContainer();
    const alice = await newClient(url);
    await op.grant(alice.here, { maxNodes: 5, maxAwake: 2, memoryMB: 256 });
    const someoneElses = await op.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    await op.at(someoneElses, (ctx) => ctx.ref('homeAddress').set('not yours'));
    const count = (await allNodes(op)).length;

    for (const node of [someoneElses.url, someoneElses.id, alice.node(someoneElses.url)]) {
      const err = await failure(alice.spawn({ lifetime: Lifetime.root(), sandbox: { capabilities: { readHomeAddress: { node, fn: readHomeAddress } } } }));
      expect(err.code).toBe('ERR_ACCESS_DENIED');
    }
    expect((await alice.budget()).used.nodes).toBe(0);
    expect((await allNodes(op)).length).toBe(count);

    // Even a public node (alice may eval on it) is not one alice may bind.
    expect(await alice.at(someoneElses, () => 'reachable')).toBe('reachable');

    // A node cannot bind a node it did not spawn (here, a sibling) for its child either.
    const parent = await alice.spawn({ lifetime: Lifetime.root(), sandbox: { spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 1 } });
    const sibling = await alice.spawn({ lifetime: Lifetime.root() });
    for (const target of [someoneElses.url, sibling.url]) {
      const err = await failure(
        alice.at(parent, (ctx, t: string) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { capabilities: { peek: { node: t, fn: (c: Ctx) => c.ref('homeAddress').get() } } } }), target),
      );
      expect(err.code).toBe('ERR_ACCESS_DENIED');
    }
    expect((await op.budget(parent)).used.nodes).toBe(0);
    expect(await childrenOf(op, parent.id)).toEqual([]);

    // A node alice spawned herself she may bind by plain URL, no key in hand: the container signs for her.
    const mine = await alice.spawn({ lifetime: Lifetime.root() });
    await alice.at(mine, (ctx) => ctx.ref('homeAddress').set('mine'));
    const guest = await alice.spawn({ lifetime: Lifetime.root(), sandbox: { capabilities: { readHomeAddress: { node: mine.url, fn: readHomeAddress } } } });
    expect(await alice.at(guest, (ctx) => ctx.caps.readHomeAddress())).toBe('mine');
  });

  it('a capability passes down: a node gives its child a capability it holds, and the child can call it', async () => {
    const { client } = await startContainer();
    const home = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(home, async (ctx) => {
      await ctx.ref('homeAddress').set('3 Lime Lane');
      await ctx.ref('diary').set('private');
    });
    const parent = await client.spawn({
      lifetime: Lifetime.root(),
      sandbox: { spawn: { lifetimes: ['linked'] }, capabilities: { readHomeAddress: { node: home, fn: readHomeAddress } } },
      // Room for the refused spawn below: the budget is checked before any grant, so a full one would refuse first.
      budget: { maxNodes: 2 },
    });
    expect(await client.at(parent, (ctx) => ctx.caps.readHomeAddress())).toBe('3 Lime Lane');

    // The same node and the same function source: the parent's own grant travels with the child.
    const child = await client.at(
      parent,
      (ctx, node: string, fn: string) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { capabilities: { address: { node, fn } } } }),
      home.url,
      readHomeAddress.toString(),
    );
    expect(await client.at(parent, (ctx, c: string) => ctx.at(c, (inner) => inner.caps.address()), child.url)).toBe('3 Lime Lane');
    expect(await client.at(child, (ctx) => ctx.caps.address())).toBe('3 Lime Lane');
    await client.at(home, (ctx) => ctx.ref('homeAddress').set('4 Lime Lane'));
    expect(await client.at(child, (ctx) => ctx.caps.address())).toBe('4 Lime Lane');

    // A different function on the same node is not the capability the parent holds: refused, nothing created.
    const other = await failure(
      client.at(parent, (ctx, node: string) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { capabilities: { diary: { node, fn: (c: Ctx) => c.ref('diary').get() } } } }), home.url),
    );
    expect(other.code).toBe('ERR_ACCESS_DENIED');
    expect(await childrenOf(client, parent.id)).toEqual([child.id]);
  });

  it('a capability passes down two levels, under new names, and still runs on the owner', async () => {
    const { client } = await startContainer();
    const home = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(home, (ctx) => ctx.ref('homeAddress').set('5 Deep Road'));
    const linkedOnly = { lifetimes: ['linked' as const] };
    const top = await client.spawn({
      lifetime: Lifetime.root(),
      sandbox: { spawn: linkedOnly, capabilities: { readHomeAddress: { node: home, fn: readHomeAddress } } },
      budget: { maxNodes: 2 },
    });
    const passDown = (ctx: Ctx, node: string, fn: string, name: string, maxNodes: number) =>
      ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { spawn: { lifetimes: ['linked'] }, capabilities: { [name]: { node, fn } } }, budget: { maxNodes } });
    const middle = await client.at(top, passDown, home.url, readHomeAddress.toString(), 'address', 1);
    const bottom = await client.at(middle, passDown, home.url, readHomeAddress.toString(), 'where', 0);
    expect(await client.at(bottom, (ctx) => ctx.caps.where())).toBe('5 Deep Road');
    expect(await client.at(middle, (ctx) => ctx.caps.address())).toBe('5 Deep Road');
  });

  it('a node may bind itself (and nodes it spawned) for a child it spawns', async () => {
    const { client } = await startContainer();
    const parent = await client.spawn({ lifetime: Lifetime.root(), sandbox: { spawn: { lifetimes: ['linked'] } }, budget: { maxNodes: 2 } });
    await client.at(parent, (ctx) => ctx.ref('secret').set('parent value'));
    const worker = await client.at(parent, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked() }));
    await client.at(worker, (ctx) => ctx.ref('secret').set('worker value'));
    const guest = await client.at(parent, (ctx, w: string) =>
      ctx.spawn({
        lifetime: ctx.Lifetime.linked(),
        sandbox: {
          capabilities: {
            fromParent: { node: ctx.here, fn: (c: Ctx) => c.ref('secret').get() },
            fromWorker: { node: w, fn: (c: Ctx) => c.ref('secret').get() },
          },
        },
      }), worker.url);
    expect(await client.at(guest, async (ctx) => [await ctx.caps.fromParent(), await ctx.caps.fromWorker()])).toEqual(['parent value', 'worker value']);
  });
});
