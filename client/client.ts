/**
 * @module client/client
 * The program's side: `connect` to a container, then `spawn`, `at`, `destroy`, `describe`. Calls travel in a
 * session with each container (client/session.ts) over undici; every reply is authenticated by the container
 * before it is believed, and results come back as MessagePack values.
 */
import { Pool } from 'undici';
import {
  AUTH_HEADER, checkLoadReport, codeHash, originOf, type LoadReport, Identity, isKeynodeError, isNodeId, KeynodeError, makeCodec, newBoxPair, openKeys, parseNodeUrl, redirectTarget, resolveNode, sealKeys,
  type Bodies, type BoxPair, type BudgetSpec, type MessageType, type NodeId, type NodeInfo, type SealedBox, type Signer,
  type DrainReport,
  type MoveResult,
} from '../protocol/index.js';
import { httpPost, PostError } from './http-post.js';
import { SessionChannel, type Transport } from './session.js';
import type { Ctx } from './ctx.js';
import { NodeHandle } from './handle.js';
import { clientKeys, spawnBody, type SandboxOptions, type SpawnOptions, type AclEntry } from './options.js';
import { nodeName } from '../lifetimes/index.js';
import { sourceOf } from './function-source.js';
import { Placer, type Placement } from './placement.js';

export interface ConnectOptions {
  /** Who this program is. Default: a fresh identity (fine for tests; real programs load one). */
  identity?: Identity;
  /** Sockets per container (default 16). */
  connections?: number;
  /** Requests in flight per socket (default 1). */
  pipelining?: number;
  signal?: AbortSignal;
  /** Certificates (PEM) to trust for containers served over HTTPS, besides the system's. */
  ca?: string | Buffer | (string | Buffer)[];
  /**
   * The container's ID, when known: any other answering at this URL is refused. Without it (and without TLS)
   * the first answer is trusted, and everything after is authenticated as coming from that container.
   */
  containerId?: string;
  /** The most a container's clock may differ from this machine's before calls to it are refused (default 10 min). */
  maxClockOffsetMs?: number;
  /**
   * Treat the URL(s) as a fleet: learn its members from their load reports and place each spawn by load
   * (client/placement.ts). Default: true when `connect` is given several URLs.
   */
  fleet?: boolean;
  /** How old a member's load report may get before placement asks for a new one (default 1000 ms). */
  loadMaxAgeMs?: number;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export type NodeLike = string | { readonly id: string; readonly url?: string };
type Fn<A extends unknown[], R> = (ctx: Ctx, ...args: A) => R;

const codec = makeCodec((url) => new NodeHandle(url));

function abortError(signal: AbortSignal): KeynodeError {
  return new KeynodeError('ERR_ABORTED', `the call was aborted: ${String(signal.reason ?? 'aborted')}`, { cause: signal.reason });
}

/**
 * @example
 * const client = await connect('http://127.0.0.1:7070', { identity: await Identity.load('me.key') });
 * const node = await client.spawn({ lifetime: Lifetime.root() });
 * const n = await client.at(node, async (ctx, by: number) => {
 *   const r = ctx.ref<number>('count');
 *   const next = ((await r.get()) ?? 0) + by;
 *   await r.set(next);
 *   return next;
 * }, 1);
 * await client.close();
 */
export class Client {
  /** This program's identity. */
  readonly here: Identity;
  /** The container this client spawns on. */
  readonly url: string;
  /** That container's ID: the `to` of its container messages. */
  readonly containerId: NodeId;
  readonly #pools = new Map<string, Pool>();
  /** A session channel per container (bounded: a program may call nodes on many). */
  readonly #channels = new Map<string, Promise<SessionChannel>>();
  readonly #options: ConnectOptions;
  /** The key spawn replies seal new nodes' private keys to; made on first spawn. */
  #box: BoxPair | undefined;
  readonly #holdGraceMs: number;
  /** Ephemeral nodes this client holds: renewed while their handles live, destroyed when collected. */
  readonly #holds = new Map<NodeId, WeakRef<NodeHandle>>();
  readonly #collected = new FinalizationRegistry<{ id: NodeId; url: string; seed: Uint8Array }>((held) => this.#release(held));
  #renewTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Where nodes that moved live now, learned from redirects (bounded: oldest forgotten first). */
  readonly #moved = new Map<NodeId, string>();
  /** Set for a fleet client: where its spawns go. */
  readonly #placer: Placer | undefined;

  /** Use `connect()`. `fleet`: the members' URLs when this is a fleet client. */
  constructor(url: string, channel: SessionChannel, identity: Identity, options: ConnectOptions, pool: Pool, fleet?: readonly string[]) {
    this.url = url;
    if (fleet) this.#placer = new Placer([url, ...fleet], (u, signal) => this.load(u, { signal }), options.loadMaxAgeMs ?? 1000);
    this.containerId = channel.containerId;
    this.here = identity;
    this.#options = options;
    this.#holdGraceMs = channel.info.holdGraceMs ?? 30_000;
    this.#pools.set(url, pool);
    this.#channels.set(url, Promise.resolve(channel));
  }

  /** The session channel to the container serving `url` (tests look at its handshakes and clock). */
  channel(url: string = this.url): Promise<SessionChannel> {
    const origin = this.#origin(url);
    let channel = this.#channels.get(origin);
    if (!channel) {
      channel = SessionChannel.discover(
        { origin, identity: this.here, transport: this.#transport(origin), maxClockOffsetMs: this.#options.maxClockOffsetMs },
        { signal: this.#options.signal },
      );
      channel.catch(() => this.#channels.delete(origin));
      if (this.#channels.size >= MAX_KNOWN_CONTAINERS) this.#channels.delete(this.#channels.keys().next().value!);
      this.#channels.set(origin, channel);
    }
    return channel;
  }

  /** Spawns one node (no process starts). The handle holds its private key. */
  async spawn(options: SpawnOptions, call?: CallOptions): Promise<NodeHandle> {
    const [node] = await this.spawnMany(1, options, call);
    return node!;
  }

  /**
   * Spawns `count` nodes with the same policies (up to 10,000 per container): on the container `placement`
   * names, or for a fleet client spread by load over the members, one message per member chosen.
   */
  async spawnMany(count: number, options: SpawnOptions, call?: CallOptions): Promise<NodeHandle[]> {
    if (typeof options !== 'object' || options === null || typeof options.lifetime?.kind !== 'string') {
      throw new KeynodeError('ERR_BAD_POLICY', 'spawn options need a `lifetime`: Lifetime.root(), .linked(), .ephemeral(), .resetting(s) or .leased(s, check)');
    }
    const placement = options.placement;
    if (placement !== undefined && placement !== 'load') return this.#spawnOn(this.#placed(placement), count, options, call);
    if (!this.#placer) return this.#spawnOn(this.url, count, options, call);
    return this.#spawnPlaced(this.#placer, count, options, call);
  }

  /** The container a `near` or `on` placement names. */
  #placed(placement: Placement): string {
    if (typeof placement === 'object' && placement !== null && 'on' in placement) {
      const origin = originOf(placement.on);
      if (!origin) throw new KeynodeError('ERR_BAD_URL', `placement.on must be a container URL (http(s)://host[:port]), got ${String(placement.on).slice(0, 80)}`);
      return origin === this.url ? this.url : origin;
    }
    if (typeof placement === 'object' && placement !== null && 'near' in placement) return this.#origin(this.#target(placement.near as NodeLike).url);
    throw new KeynodeError('ERR_BAD_POLICY', "`placement` is 'load', { near: node } or { on: url }");
  }

  /**
   * Places `count` nodes over the fleet and spawns each member's share in one message. A member that cannot
   * be reached or has no room is skipped and its share placed again on the others; any other refusal (a bad
   * policy, say) would be the same everywhere and is thrown.
   */
  async #spawnPlaced(placer: Placer, count: number, options: SpawnOptions, call?: CallOptions): Promise<NodeHandle[]> {
    const out: NodeHandle[] = [];
    let left = count;
    for (let round = 0; left > 0; round++) {
      const plan = [...(await placer.place(left))];
      const results = await Promise.allSettled(plan.map(([url, n]) => this.#spawnOn(url, n, options, call)));
      left = 0;
      let fatal: unknown;
      results.forEach((r, i) => {
        const [url, n] = plan[i]!;
        if (r.status === 'fulfilled') return void out.push(...r.value);
        placer.unplace(url, n);
        const code = (r.reason as { code?: string }).code;
        if (code === 'ERR_UNAVAILABLE' || code === 'ERR_BUDGET_EXHAUSTED' || code === 'ERR_OVERLOADED') {
          placer.skip(url, `${code}: ${(r.reason as Error).message}`);
          left += n;
        } else fatal ??= r.reason;
      });
      if (fatal) throw fatal;
      if (round > MAX_MEMBERS_TRIED) throw new KeynodeError('ERR_UNAVAILABLE', `could not place ${left} node(s) after trying ${round} times`);
    }
    return out;
  }

  /** The load of the container at `url` and this client's room there, authenticated by it (fleet clients place by this). */
  async load(url: string = this.url, call?: CallOptions): Promise<LoadReport> {
    const channel = await this.channel(url);
    return checkLoadReport(await channel.request('load', channel.containerId, {}, call ?? {}), channel.origin, channel.containerId);
  }

  /** For a fleet client: its members and what it last knew of each (an empty list for a one-container client). */
  members(): ReturnType<Placer['members']> {
    return this.#placer?.members() ?? [];
  }

  /** For a fleet client: asks every member for its load now, and learns the members they know. */
  async refreshMembers(): Promise<void> {
    await this.#placer?.refresh();
  }

  async #spawnOn(url: string, count: number, options: SpawnOptions, call?: CallOptions): Promise<NodeHandle[]> {
    const keys = clientKeys(options, count);
    const channel = await this.channel(url);
    // Private keys cross the wire only sealed: chosen seeds to the container's key, new keys back to ours.
    const box = (this.#box ??= newBoxPair());
    const sealed = keys ? { keys: keys.map((k) => ({ grants: k.grants })), seeds: sealKeys(keys.map((k) => k.seed), await channel.boxKey(call ?? {}), box) } : {};
    const body = { ...spawnBody(options), count, ...sealed, sealTo: box.publicKey } as unknown as Bodies['spawn'];
    const value = (await channel.request('spawn', channel.containerId, body, call ?? {})) as { nodes: { url: string }[]; keys?: SealedBox };
    if (!Array.isArray(value?.nodes)) throw new KeynodeError('ERR_BAD_REPLY', 'the container answered a spawn without its nodes');
    const secrets = value.keys ? openKeys(value.keys, box, value.nodes.length) : [];
    const handles = value.nodes.map((n, i) => new NodeHandle(n.url, secrets[i]));
    if (options.lifetime.kind === 'ephemeral') for (const h of handles) this.#hold(h);
    return handles;
  }

  /** Operator only: gives a principal a budget to spawn top-level nodes with (replacing an earlier grant). */
  async grant(principal: string | { id: string }, budget: Omit<BudgetSpec, 'storageMB'> & { storageMB?: number }, options?: CallOptions): Promise<BudgetReport> {
    const id = typeof principal === 'string' ? principal : principal.id;
    return (await this.request('grant', { principal: id, budget }, options)) as BudgetReport;
  }

  /** A principal's budget limits and use (yours by default; anyone's for the operator). */
  async budget(principal?: string | { id: string }, options?: CallOptions): Promise<BudgetReport> {
    const id = principal === undefined ? undefined : typeof principal === 'string' ? principal : principal.id;
    return (await this.request('budget', id === undefined ? {} : { principal: id }, options)) as BudgetReport;
  }

  /** The parent changes its child's ACL or sandbox (capabilities stay as bound at spawn). */
  async update(node: NodeLike, change: { acl?: AclEntry[]; sandbox?: Omit<SandboxOptions, 'capabilities'> }, options?: CallOptions): Promise<NodeInfo> {
    const { id, url } = this.#target(node);
    const body: Bodies['update'] = { node: id };
    if (change.acl) body.acl = change.acl.map((e) => (e === 'public' ? e : nodeName(e)));
    if (change.sandbox) body.sandbox = spawnBody({ lifetime: { kind: 'root' }, sandbox: change.sandbox }).sandbox;
    return (await this.#follow(id, url, (at) => this.#send(at, 'update', undefined, body, this.here, options))) as NodeInfo;
  }

  #hold(handle: NodeHandle): void {
    this.#holds.set(handle.id, new WeakRef(handle));
    this.#collected.register(handle, { id: handle.id, url: handle.url, seed: handle.exportSecretKey()! });
    this.#renewTimer ??= setInterval(() => void this.#renew(), Math.max(10, Math.floor(this.#holdGraceMs / 3))).unref();
  }

  async #renew(): Promise<void> {
    if (this.#closed) return;
    // Each container keeps the holds on its own nodes (a fleet client's nodes live on several).
    const by = new Map<string, NodeId[]>();
    for (const [id, ref] of this.#holds) {
      const handle = ref.deref();
      if (!handle) continue;
      const origin = this.#origin(handle.url);
      by.set(origin, [...(by.get(origin) ?? []), id]);
    }
    await Promise.all(
      [...by].map(async ([origin, ids]) => {
        try {
          const { gone } = (await this.#send(origin, 'renew', undefined, { nodes: ids }, this.here)) as { gone: NodeId[] };
          for (const id of gone) this.#holds.delete(id);
        } catch {
          // The next renewal tries again; a hold lapses only after the whole grace period.
        }
      }),
    );
  }

  /** A handle of an Ephemeral node was garbage collected: nothing holds the node any more. */
  #release(held: { id: NodeId; url: string; seed: Uint8Array }): void {
    this.#holds.delete(held.id);
    if (this.#closed) return;
    this.#send(held.url, 'destroy', held.id, {}, Identity.fromSecretKey(held.seed)).catch(() => {});
  }

  /** Runs `fn(ctx, ...args)` on the node and returns its result. */
  at<A extends unknown[], R>(node: NodeLike, fn: Fn<A, R>, ...args: A): Promise<Awaited<R>> {
    return this.call(node, fn, args);
  }

  /** `at` with call options (an AbortSignal). */
  async call<A extends unknown[], R>(node: NodeLike, fn: Fn<A, R>, args: A, options?: CallOptions): Promise<Awaited<R>> {
    const { id, url } = this.#target(node);
    const source = sourceOf(fn);
    const encoded = codec.encode(args, 'args');
    if (options?.signal?.aborted) throw abortError(options.signal);
    const value = await this.#follow(id, url, async (at) => (await this.channel(at)).eval(id, source, codeHash(source), encoded, {}, options ?? {}));
    if (!(value instanceof Uint8Array)) throw new KeynodeError('ERR_BAD_REPLY', 'the container returned a malformed eval result');
    return codec.decode(value) as Awaited<R>;
  }

  /**
   * Destroys the node. The proof is a signature by the node's own key when the handle holds it (nodes this
   * client spawned), else by this client, which works when the client is an ancestor of the node.
   */
  async destroy(node: NodeLike, options?: CallOptions): Promise<void> {
    const { id, url } = this.#target(node);
    const signer = (node instanceof NodeHandle && node.identity()) || this.here;
    await this.#follow(id, url, (at) => this.#send(at, 'destroy', id, {}, signer, options));
  }

  /**
   * Moves the node (and every node under it) to the container at `to`, a peer of the one it lives on (its
   * ancestors and the operator may). Its ID stays; its URL's origin becomes `to`'s; the old URL answers with
   * a redirect this library follows. Retrying a move that failed midway finishes it.
   */
  async move(node: NodeLike, to: string, options?: CallOptions): Promise<MoveResult> {
    const { id, url } = this.#target(node);
    const result = (await this.#follow(id, url, (at) => this.#send(at, 'move', undefined, { node: id, to }, this.here, options))) as MoveResult;
    if (typeof result?.url !== 'string' || parseNodeUrl(result.url).id !== id) throw new KeynodeError('ERR_BAD_REPLY', 'the container answered a move without the node\'s new URL');
    this.#remember(id, result.url);
    return result;
  }

  /** Operator: moves every node off this client's container to its peers, then reports. */
  async drain(options: { concurrency?: number } & CallOptions = {}): Promise<DrainReport> {
    const { signal, concurrency } = options;
    return (await this.request('drain', concurrency === undefined ? {} : { concurrency }, { signal })) as DrainReport;
  }

  /** The node's URL as this client knows it: its own, or where a redirect said it went. */
  urlOf(node: NodeLike): string {
    return this.#target(node).url;
  }

  /** Operator only: destroys any node, without its key (its Linked and Ephemeral children go with it). */
  async forceDestroy(node: NodeLike, options?: CallOptions): Promise<void> {
    await this.request('forceDestroy', { node: this.#target(node).id }, options);
  }

  /** Status and policies of a node (for its ancestors and the operator). */
  async describe(node: NodeLike, options?: CallOptions): Promise<NodeInfo> {
    const { id, url } = this.#target(node);
    return (await this.#follow(id, url, (at) => this.#send(at, 'describe', undefined, { node: id }, this.here, options))) as NodeInfo;
  }

  /** Log lines of a node after sequence number `after`; `wait` ms long-polls for new ones. */
  async logs(node: NodeLike, options: { after?: number; limit?: number; wait?: number } & CallOptions = {}): Promise<{ seq: number; ts: number; line: string }[]> {
    const { id, url } = this.#target(node);
    const { signal, ...rest } = options;
    const value = (await this.#follow(id, url, (at) => this.#send(at, 'logs', undefined, { node: id, ...rest }, this.here, { signal }))) as { lines: { seq: number; ts: number; line: string }[] };
    return value.lines;
  }

  /** A handle for a node known by URL or ID; pass its secret key to be able to destroy it as itself. */
  node(node: NodeLike, secretKey?: Uint8Array): NodeHandle {
    return new NodeHandle(this.#target(node).url, secretKey);
  }

  /** Sends any container message as this client, in its session (the admin CLI uses this). */
  request<T extends MessageType>(type: T, body: Bodies[T], options?: CallOptions): Promise<unknown> {
    return this.#send(this.url, type, this.containerId, body, this.here, options);
  }

  /** Sends a container message as a one-off signed envelope, outside the session (rare calls; tests). */
  async requestOneOff<T extends MessageType>(type: T, body: Bodies[T], options?: CallOptions): Promise<unknown> {
    return (await this.channel()).oneOff(this.here, type, this.containerId, body, options ?? {});
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#renewTimer);
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
    this.#pools.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #target(node: NodeLike): { id: NodeId; url: string } {
    const { id, url } = resolveNode(node);
    return { id, url: this.#moved.get(id) ?? url ?? `${this.url}/${id}` };
  }

  /**
   * Sends to the node's container, and again to where an authenticated redirect says it lives now (the
   * redirect means nothing ran there), at most MAX_REDIRECTS times and never back to a container already
   * asked; remembers the last for later calls.
   */
  async #follow<T>(id: NodeId, url: string, send: (url: string) => Promise<T>): Promise<T> {
    const seen = new Set([parseNodeUrl(url).origin]);
    for (let at = url; ;) {
      try {
        const value = await send(at);
        if (at !== url) this.#remember(id, at);
        return value;
      } catch (e) {
        const next = redirectTarget(e, id, seen);
        if (next === undefined) throw e;
        at = next;
      }
    }
  }

  #remember(id: NodeId, url: string): void {
    this.#moved.delete(id);
    if (this.#moved.size >= MAX_REMEMBERED_MOVES) this.#moved.delete(this.#moved.keys().next().value!);
    this.#moved.set(id, url);
  }

  /** The container of a node URL, or of a container URL (an origin: a fleet member). */
  #origin(url: string): string {
    if (url === this.url || url.startsWith(`${this.url}/`)) return this.url;
    const origin = originOf(url);
    return origin !== undefined && (url === origin || url === `${origin}/`) ? origin : parseNodeUrl(url).origin;
  }

  #pool(origin: string): Pool {
    if (this.#closed) throw new KeynodeError('ERR_CLOSED', 'this client is closed');
    let pool = this.#pools.get(origin);
    if (!pool) {
      pool = newPool(origin, this.#options);
      this.#pools.set(origin, pool);
    }
    return pool;
  }

  #transport(origin: string): Transport {
    return poolTransport(origin, () => this.#pool(origin));
  }

  /**
   * A message as this client goes in its session with the container; one signed by another key (a node's
   * own, for its destroy) goes as a one-off signed envelope. `to` is the node, or (undefined) that container.
   */
  async #send<T extends MessageType>(url: string, type: T, to: NodeId | undefined, body: Bodies[T], signer: Signer, options?: CallOptions): Promise<unknown> {
    if (options?.signal?.aborted) throw abortError(options.signal);
    const channel = await this.channel(url);
    const target = to ?? channel.containerId;
    return signer === this.here ? channel.request(type, target, body, options ?? {}) : channel.oneOff(signer, type, target, body, options ?? {});
  }
}

export interface BudgetReport {
  principal: NodeId;
  limits: BudgetSpec;
  /** `storageBytes` is exact; `storageMB` is the same in MiB. Storage counts the holder's whole subtree. */
  used: { nodes: number; awake: number; memoryMB: number; storageMB: number; storageBytes: number };
}

/** The innermost cause's message: undici wraps the useful one ("connect ECONNREFUSED ...") in others. */
function rootMessage(e: unknown): string {
  let m = e as { message?: string; cause?: unknown };
  while (m?.cause && typeof m.cause === 'object') m = m.cause as typeof m;
  return m?.message ?? String(e);
}

const MAX_KNOWN_CONTAINERS = 1024;
const MAX_REMEMBERED_MOVES = 10_000;

/** Rounds of re-placing a spawn whose members failed; past this many, the fleet is failing faster than it answers. */
const MAX_MEMBERS_TRIED = 8;

function newPool(origin: string, options: ConnectOptions): Pool {
  return new Pool(origin, { connections: options.connections ?? 16, pipelining: options.pipelining ?? 1, ...(options.ca ? { connect: { ca: options.ca } } : {}) });
}

/** HTTP for a session channel: POSTs and GETs on the client's pool for that origin. */
function poolTransport(origin: string, pool: () => Pool): Transport {
  return {
    async post(path, body, { signal }) {
      if (signal?.aborted) throw abortError(signal);
      try {
        const res = await httpPost(pool(), { path, body, header: AUTH_HEADER, signal });
        return { status: res.status, body: res.body, auth: res.header };
      } catch (e) {
        if (signal?.aborted) throw abortError(signal);
        const cause = e instanceof PostError ? e.cause : e;
        if (isKeynodeError(cause)) throw cause;
        if (e instanceof PostError && e.replyStarted) throw new KeynodeError('ERR_UNAVAILABLE', `the reply from ${origin} broke off: ${(cause as Error).message}`, { cause });
        throw new KeynodeError('ERR_UNAVAILABLE', `cannot reach ${origin}: ${rootMessage(cause)}`, { cause });
      }
    },
    async get(path, { signal }) {
      try {
        const res = await pool().request({ path, method: 'GET', signal, headersTimeout: 10_000, bodyTimeout: 10_000 });
        return { status: res.statusCode, text: await res.body.text() };
      } catch (cause) {
        if (signal?.aborted) throw abortError(signal);
        if (isKeynodeError(cause)) throw cause;
        throw new KeynodeError('ERR_UNAVAILABLE', `cannot reach a keynode container at ${origin}: ${rootMessage(cause)}`, { cause });
      }
    },
  };
}

/**
 * Connects to a container: learns its ID and (signed) clock, and returns a client that acts as `identity`.
 * Its first call opens a session (one signed handshake); every reply after is authenticated. Given several
 * URLs (or `fleet: true`), a fleet client: spawns are placed over the fleet's members (client/placement.ts).
 * @example
 * await using client = await connect('http://127.0.0.1:7070', { identity });
 * await using fleet = await connect(['http://kn-0.kn:7070', 'http://kn-1.kn:7070'], { identity });
 */
export async function connect(url: string | readonly string[], options: ConnectOptions = {}): Promise<Client> {
  const urls = typeof url === 'string' ? [url] : [...url];
  const origins = urls.map((u) => {
    const origin = originOf(u);
    if (!origin) throw new KeynodeError('ERR_BAD_URL', `not a container URL (http(s)://host[:port]): ${String(u).slice(0, 80)}`);
    return origin;
  });
  if (!origins.length) throw new KeynodeError('ERR_BAD_URL', 'connect: give at least one container URL');
  const fleet = options.fleet ?? origins.length > 1;
  let origin = origins[0]!;
  if (options.containerId !== undefined && !isNodeId(options.containerId)) throw new KeynodeError('ERR_BAD_NODE_ID', 'connect: `containerId` must be a container ID (52 lowercase base32 characters)');
  const identity = options.identity ?? Identity.generate();
  let pool = newPool(origin, options);
  try {
    let channel = await SessionChannel.discover(
      { origin, identity, transport: poolTransport(origin, () => pool), containerId: options.containerId as NodeId | undefined, maxClockOffsetMs: options.maxClockOffsetMs },
      { signal: options.signal },
    );
    const stated = originOf(channel.info.url);
    if (fleet && stated && stated !== origin) {
      // A fleet's Service URL reaches any member, a different one per connection: sessions go to the URL
      // the member that answered states for itself, expecting the same container there.
      const own = newPool(stated, options);
      try {
        channel = await SessionChannel.discover(
          { origin: stated, identity, transport: poolTransport(stated, () => own), containerId: channel.containerId, maxClockOffsetMs: options.maxClockOffsetMs },
          { signal: options.signal },
        );
        await pool.close().catch(() => {});
        [pool, origin] = [own, stated];
      } catch {
        // Its own URL is not reachable from here (a client outside the cluster): the given URL it is.
        await own.close().catch(() => {});
      }
    }
    // A Service URL that led to a member's own URL is not a member itself: placing "on" it would reach any pod.
    return new Client(origin, channel, identity, options, pool, fleet ? origins.filter((o) => o !== origin && o !== origins[0]) : undefined);
  } catch (e) {
    await pool.close().catch(() => {});
    throw e;
  }
}
