/**
 * Sharing (seed 003): give someone exactly one computation on your data, as a node URL.
 *
 * Two containers on two ports: "home" runs your nodes, "away" runs a mail-order shop's node and your friend
 * Tom's node. Everything crosses between them as node URLs.
 *
 *  (a) Your home address lives in a ref on your node. You spawn a *sharing node* whose only capability reads
 *      that ref, and whose ACL admits the shop; the shop's mailer node keeps the sharing node's URL and calls it
 *      whenever it needs to mail you. It sees your updates, and nothing else of yours.
 *  (b) Tom keeps a typed movie list in his node. You spawn a write-only *mailbox* whose only capability appends
 *      validated `{ title, year }` records to a collection on your node. Tom's node sends his list there; a
 *      malformed list is refused and appends nothing. You then compute over the merged collection.
 *
 * Run: npm run example -- sharing
 */
import { connect, Identity, KeynodeError, Lifetime, type Ctx } from 'keynode';
import { check, run } from '../lib/env.js';

interface Movie {
  title: string;
  year: number;
}

// Functions travel to nodes as source code, so they close over nothing: everything they need comes in as
// arguments or from `ctx` (the node they run on).

/** The one thing the shop may do with your data: read one ref. It runs on your node, with your node's state. */
const readHomeAddress = (ctx: Ctx) => ctx.ref<string>('homeAddress').get();

/**
 * The one thing Tom may do: append movies to your collection. It validates as it goes; if anything is wrong it
 * throws, and a throwing eval commits none of its writes, so a bad list appends nothing, not even its good part.
 */
const appendMovies = async (ctx: Ctx, movies: unknown) => {
  if (!Array.isArray(movies) || movies.length === 0 || movies.length > 1000) throw new TypeError('expected a list of 1 to 1000 movies');
  const collection = ctx.index<Movie>('movies');
  for (const m of movies) {
    const ok = typeof m === 'object' && m !== null && Object.keys(m).length === 2 && typeof m.title === 'string' && m.title.length > 0 && m.title.length <= 200 && Number.isInteger(m.year) && m.year >= 1888 && m.year <= 2100;
    if (!ok) throw new TypeError(`not a { title: string, year: number }: ${JSON.stringify(m)}`);
    await collection.put(`${m.year}:${m.title}`, { title: m.title, year: m.year });
  }
  return movies.length;
};

/** The error code a call fails with (or 'no error'). */
async function codeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return 'no error';
  } catch (e) {
    return e instanceof KeynodeError ? e.code : String(e);
  }
}

await run('sharing', async ({ sites: [home, away] }) => {
  const you = home!.client;
  console.log(`home container: ${home!.url}`);
  console.log(`away container: ${away!.url}`);

  // The shop and Tom are other principals, each with its own key pair, using the away container. The away
  // container's operator gives them a budget so they may spawn a node there.
  const [shop, tom] = [Identity.generate(), Identity.generate()];
  for (const who of [shop, tom]) await away!.client.grant(who, { maxNodes: 1, maxAwake: 1, memoryMB: 128 });
  const shopClient = await connect(away!.url, { identity: shop });
  const tomClient = await connect(away!.url, { identity: tom });

  try {
    // Your node: a Root node (it lives until you destroy it) holding your private data.
    const mine = await you.spawn({ lifetime: Lifetime.root() });
    await you.at(mine, async (ctx) => {
      await ctx.ref('homeAddress').set('12 Elm Street, Springfield');
      await ctx.ref('diary').set('private thoughts');
      await ctx.index('movies').put('1968:2001: A Space Odyssey', { title: '2001: A Space Odyssey', year: 1968 });
      await ctx.index('movies').put('1982:Blade Runner', { title: 'Blade Runner', year: 1982 });
    });
    console.log(`your node (home): ${mine.url}`);

    // ---- (a) Share your home address with the shop ----

    // The shop's mailer node, on its own container. It may contact no node yet.
    const mailer = await shopClient.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [] } });
    console.log(`shop's mailer node (away): ${mailer.url}`);

    // You spawn the sharing node: no state of its own, no contacts, exactly one capability (read your
    // address), and an ACL naming the shop and its mailer node. You hand over its URL.
    const sharing = await you.spawn({
      lifetime: Lifetime.root(),
      sandbox: { refs: 'none', contacts: [], capabilities: { readHomeAddress: { node: mine, fn: readHomeAddress } } },
      acl: [shop, mailer.url],
    });
    console.log(`sharing node (home): ${sharing.url}`);

    // The shop lets its mailer contact your sharing node, and files the URL under your name.
    await shopClient.update(mailer, { sandbox: { contacts: [sharing.url] } });
    await shopClient.at(mailer, (ctx, url: string) => ctx.index('customers').put('you', url), sharing.url);

    // Whenever the shop mails you, its mailer asks your sharing node (across containers) for your address.
    const label = (customer: string) =>
      shopClient.at(mailer, async (ctx, name: string) => {
        const url = await ctx.index<string>('customers').get(name);
        if (!url) throw new Error(`no customer ${name}`);
        const address = await ctx.at(url, (c) => c.caps.readHomeAddress());
        return `To: ${name}, ${address}`;
      }, customer);
    const first = await label('you');
    console.log(`mailer prints a label: ${first}`);
    check(first === 'To: you, 12 Elm Street, Springfield', 'the mailer reads your address');

    // You move. The shop's next label has the new address: it reads your ref, not a copy.
    await you.at(mine, (ctx) => ctx.ref('homeAddress').set('7 Oak Avenue, Shelbyville'));
    const second = await label('you');
    console.log(`you moved; mailer prints: ${second}`);
    check(second === 'To: you, 7 Oak Avenue, Shelbyville', 'the mailer sees your update');

    // The shop's own program may use the sharing node too (it is on the ACL)...
    const direct = await shopClient.at(sharing.url, (ctx) => ctx.caps.readHomeAddress());
    console.log(`shop reads through the capability: ${direct}`);
    check(direct === '7 Oak Avenue, Shelbyville', 'the shop reads through the capability');
    // ...but it gets nothing else. Your node's ACL does not list it:
    const denied = await codeOf(shopClient.at(mine.url, (ctx) => ctx.ref('diary').get()));
    console.log(`shop evals on your node: ${denied}`);
    check(denied === 'ERR_ACCESS_DENIED', 'the shop cannot eval on your node');
    // the sharing node's sandbox lets its code contact no node (a capability is not a contact):
    const escape = await codeOf(shopClient.at(sharing.url, (ctx, target: string) => ctx.at(target, (c) => c.ref('diary').get()), mine.url));
    console.log(`shop's code on the sharing node calls your node: ${escape}`);
    check(escape === 'ERR_SANDBOX', 'the sharing node cannot reach your node except through its capability');
    // and the sharing node has no state of its own to read or write:
    const own = await codeOf(shopClient.at(sharing.url, (ctx) => ctx.ref('diary').get()));
    console.log(`shop reads the sharing node's own refs: ${own}`);
    check(own === 'ERR_SANDBOX', 'the sharing node has refs: none');
    const caps = await shopClient.at(sharing.url, (ctx) => Object.keys(ctx.caps));
    console.log(`capabilities the shop sees: ${caps.join(', ')}`);
    check(caps.length === 1 && caps[0] === 'readHomeAddress', 'exactly one capability');

    // ---- (b) Tom sends you a typed movie list ----

    // Tom's node, on the away container, already holds his list.
    const tomsNode = await tomClient.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [] } });
    const tomsMovies: Movie[] = [
      { title: 'Alien', year: 1979 },
      { title: 'Arrival', year: 2016 },
      { title: 'Heat', year: 1995 },
      { title: 'Stalker', year: 1979 },
    ];
    await tomClient.at(tomsNode, async (ctx, movies: Movie[]) => {
      for (const m of movies) await ctx.index('movies').put(`${m.year}:${m.title}`, m);
    }, tomsMovies);
    console.log(`Tom's node (away): ${tomsNode.url}`);

    // You spawn a write-only mailbox: its only capability appends to your collection; only Tom's node may use it.
    const mailbox = await you.spawn({
      lifetime: Lifetime.root(),
      sandbox: { refs: 'none', contacts: [], capabilities: { addMovies: { node: mine, fn: appendMovies } } },
      acl: [tomsNode.url],
    });
    console.log(`movie mailbox (home): ${mailbox.url}`);
    // Tom lets his node contact the mailbox.
    await tomClient.update(tomsNode, { sandbox: { contacts: [mailbox.url] } });

    // Tom's node sends its whole list: a computable value, not a blob of text.
    const sent = await tomClient.at(tomsNode, async (ctx, to: string) => {
      const list = (await ctx.index<Movie>('movies').entries()).map(([, m]) => m);
      return ctx.at(to, (c, movies: Movie[]) => c.caps.addMovies(movies), list);
    }, mailbox.url);
    const count = () => you.at(mine, async (ctx) => (await ctx.index('movies').entries()).length);
    const afterTom = await count();
    console.log(`Tom sent ${sent} movies; your collection has ${afterTom}`);
    check(sent === 4 && afterTom === 6, 'Tom\'s movies were appended');

    // A malformed list (its first entry is fine, the second is not) is refused, and nothing of it is kept.
    let refusal = 'no error';
    try {
      await tomClient.at(tomsNode, (ctx, to: string) => ctx.at(to, (c, movies: unknown) => c.caps.addMovies(movies), [
        { title: 'Ghost', year: 1990 },
        { title: 'Jaws', year: 'nineteen seventy-five' },
      ]), mailbox.url);
    } catch (e) {
      if (!(e instanceof KeynodeError)) throw e;
      refusal = `${e.code} ${e.remote?.name}: ${e.remote?.message}`;
    }
    const afterBad = await count();
    console.log(`malformed list: ${refusal}; your collection still has ${afterBad}`);
    check(refusal.startsWith('ERR_USER TypeError'), 'the malformed list fails validation');
    check(afterBad === 6, 'nothing of the malformed list was appended');

    // The mailbox is write-only: Tom cannot read your collection through it.
    const peek = await codeOf(tomClient.at(tomsNode, (ctx, to: string, target: string) => ctx.at(to, (c, t: string) => c.at(t, (n) => n.index('movies').entries()), target), mailbox.url, mine.url));
    console.log(`Tom reads your collection through the mailbox: ${peek}`);
    check(peek === 'ERR_SANDBOX', 'the mailbox cannot read your collection');

    // The merged collection is yours to compute on: movies per decade.
    const perDecade = await you.at(mine, async (ctx) => {
      const out: Record<string, number> = {};
      for (const [, m] of await ctx.index<Movie>('movies').entries()) {
        const decade = `${Math.floor(m.year / 10) * 10}s`;
        out[decade] = (out[decade] ?? 0) + 1;
      }
      return out;
    });
    const summary = Object.entries(perDecade).map(([d, n]) => `${d}: ${n}`).join(', ');
    console.log(`movies per decade: ${summary}`);
    check(summary === '1960s: 1, 1970s: 2, 1980s: 1, 1990s: 1, 2010s: 1', 'count per decade');

    // Tidy up: destroying a node takes its key, which your handles hold.
    for (const node of [mailbox, sharing, mine]) await you.destroy(node);
    await shopClient.destroy(mailer);
    await tomClient.destroy(tomsNode);
  } finally {
    await shopClient.close();
    await tomClient.close();
  }
}, 2);
