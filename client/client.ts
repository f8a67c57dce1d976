/**
 * @module client/client
 * The program's side: `connect` to a container, then `spawn`, `at`, `destroy`, `describe`. Every call is a
 * signed envelope POSTed with undici; results come back as MessagePack values.
 */
import { Pool, request } from 'undici';
import {
  decode, Identity, isKeynodeError, KeynodeError, makeCodec, parseNodeUrl, resolveNode, sealEnvelope,
  type Bodies, type BudgetSpec, type MessageType, type NodeId, type NodeInfo, type Reply, type Signer,
} from '../protocol/index.js';
import type { Ctx } from './ctx.js';
import { NodeHandle } from './handle.js';
import { clientKeys, spawnBody, type SandboxOptions, type SpawnOptions, type AclEntry } from './options.js';
import { nodeName } from '../lifetimes/index.js';
import { sourceOf } from './function-source.js';

export interface ConnectOptions {
  /** Who this program is. Default: a fresh identity (fine for tests; real programs load one). */
  identity?: Identity;
  /** Sockets per container (default 16). */
  connections?: number;
  /** Requests in flight per socket (default 1). */
  pipelining?: number;
  signal?: AbortSignal;
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
  readonly #clockOffset = new Map<string, number>();
  /** Other containers' IDs by origin (bounded: a program may call nodes on many). */
  readonly #containers = new Map<string, NodeId>();
  readonly #options: ConnectOptions;
  readonly #holdGraceMs: number;
  /** Ephemeral nodes this client holds: renewed while their handles live, destroyed when collected. */
  readonly #holds = new Map<NodeId, WeakRef<NodeHandle>>();
  readonly #collected = new FinalizationRegistry<{ id: NodeId; url: string; seed: Uint8Array }>((held) => this.#release(held));
  #renewTimer: NodeJS.Timeout | undefined;
  #closed = false;

  /** Use `connect()`. */
  constructor(url: string, containerId: NodeId, identity: Identity, options: ConnectOptions, clockOffset: number, holdGraceMs = 30_000) {
    this.url = url;
    this.containerId = containerId;
    this.here = identity;
    this.#options = options;
    this.#holdGraceMs = holdGraceMs;
    this.#clockOffset.set(url, clockOffset);
  }

  /** Spawns one node (no process starts). The handle holds its private key. */
  async spawn(options: SpawnOptions, call?: CallOptions): Promise<NodeHandle> {
    const [node] = await this.spawnMany(1, options, call);
    return node!;
  }

  /** Spawns `count` nodes with the same policies in one message (up to 10,000). */
  async spawnMany(count: number, options: SpawnOptions, call?: CallOptions): Promise<NodeHandle[]> {
    if (typeof options !== 'object' || options === null || typeof options.lifetime?.kind !== 'string') {
      throw new KeynodeError('ERR_BAD_POLICY', 'spawn options need a `lifetime`: Lifetime.root(), .linked(), .ephemeral(), .resetting(s) or .leased(s, check)');
    }
    const keys = clientKeys(options, count);
    const body = { ...spawnBody(options), count, ...(keys ? { keys } : {}) } as Bodies['spawn'];
    const value = (await this.#send(this.url, 'spawn', this.containerId, body, this.here, call)) as { nodes: { url: string; secretKey: Uint8Array }[] };
    const handles = value.nodes.map((n) => new NodeHandle(n.url, n.secretKey));
    if (options.lifetime.kind === 'ephemeral') for (const h of handles) this.#hold(h);
    return handles;
  }

  /** Operator only: gives a principal a budget to spawn top-level nodes with (replacing an earlier grant). */
  async grant(principal: string | { id: string }, budget: BudgetSpec, options?: CallOptions): Promise<BudgetReport> {
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
    const { id } = this.#target(node);
    const body: Bodies['update'] = { node: id };
    if (change.acl) body.acl = change.acl.map((e) => (e === 'public' ? e : nodeName(e)));
    if (change.sandbox) body.sandbox = spawnBody({ lifetime: { kind: 'root' }, sandbox: change.sandbox }).sandbox;
    return (await this.request('update', body, options)) as NodeInfo;
  }

  #hold(handle: NodeHandle): void {
    this.#holds.set(handle.id, new WeakRef(handle));
    this.#collected.register(handle, { id: handle.id, url: handle.url, seed: handle.exportSecretKey()! });
    this.#renewTimer ??= setInterval(() => void this.#renew(), Math.max(10, Math.floor(this.#holdGraceMs / 3))).unref();
  }

  async #renew(): Promise<void> {
    const ids = [...this.#holds].filter(([, ref]) => ref.deref() !== undefined).map(([id]) => id);
    if (!ids.length || this.#closed) return;
    try {
      const { gone } = (await this.request('renew', { nodes: ids })) as { gone: NodeId[] };
      for (const id of gone) this.#holds.delete(id);
    } catch {
      // The next renewal tries again; a hold lapses only after the whole grace period.
    }
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
    const body = { fn: sourceOf(fn), args: codec.encode(args, 'args') };
    const value = await this.#send(url, 'eval', id, body, this.here, options);
    if (!(value instanceof Uint8Array)) throw new KeynodeError('ERR_BAD_MESSAGE', 'the container returned a malformed eval result');
    return codec.decode(value) as Awaited<R>;
  }

  /**
   * Destroys the node. The proof is a signature by the node's own key when the handle holds it (nodes this
   * client spawned), else by this client, which works when the client is an ancestor of the node.
   */
  async destroy(node: NodeLike, options?: CallOptions): Promise<void> {
    const { id, url } = this.#target(node);
    const signer = (node instanceof NodeHandle && node.identity()) || this.here;
    await this.#send(url, 'destroy', id, {}, signer, options);
  }

  /** Operator only: destroys any node, without its key (its Linked and Ephemeral children go with it). */
  async forceDestroy(node: NodeLike, options?: CallOptions): Promise<void> {
    await this.request('forceDestroy', { node: this.#target(node).id }, options);
  }

  /** Status and policies of a node (for its ancestors and the operator). */
  async describe(node: NodeLike, options?: CallOptions): Promise<NodeInfo> {
    const { id, url } = this.#target(node);
    return (await this.#send(this.#origin(url), 'describe', await this.#containerOf(url), { node: id }, this.here, options)) as NodeInfo;
  }

  /** Log lines of a node after sequence number `after`; `wait` ms long-polls for new ones. */
  async logs(node: NodeLike, options: { after?: number; limit?: number; wait?: number } & CallOptions = {}): Promise<{ seq: number; ts: number; line: string }[]> {
    const { id, url } = this.#target(node);
    const { signal, ...rest } = options;
    const value = (await this.#send(this.#origin(url), 'logs', await this.#containerOf(url), { node: id, ...rest }, this.here, { signal })) as { lines: { seq: number; ts: number; line: string }[] };
    return value.lines;
  }

  /** A handle for a node known by URL or ID; pass its secret key to be able to destroy it as itself. */
  node(node: NodeLike, secretKey?: Uint8Array): NodeHandle {
    return new NodeHandle(this.#target(node).url, secretKey);
  }

  /** Sends any container message signed by this client (the admin CLI uses this). */
  request<T extends MessageType>(type: T, body: Bodies[T], options?: CallOptions): Promise<unknown> {
    return this.#send(this.url, type, this.containerId, body, this.here, options);
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
    return { id, url: url ?? `${this.url}/${id}` };
  }

  #origin(url: string): string {
    return url === this.url || url.startsWith(`${this.url}/`) ? this.url : parseNodeUrl(url).origin;
  }

  /** The ID of the container at `url`'s origin, asked once per origin: envelopes are signed for it. */
  async #containerOf(url: string): Promise<NodeId> {
    const origin = this.#origin(url);
    if (origin === this.url) return this.containerId;
    const known = this.#containers.get(origin);
    if (known) return known;
    const id = (await fetchInfo(origin, this.#options.signal)).containerId;
    if (this.#containers.size >= MAX_KNOWN_CONTAINERS) this.#containers.delete(this.#containers.keys().next().value!);
    this.#containers.set(origin, id);
    return id;
  }

  #pool(origin: string): Pool {
    if (this.#closed) throw new KeynodeError('ERR_CLOSED', 'this client is closed');
    let pool = this.#pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, { connections: this.#options.connections ?? 16, pipelining: this.#options.pipelining ?? 1 });
      this.#pools.set(origin, pool);
    }
    return pool;
  }

  async #send<T extends MessageType>(url: string, type: T, to: NodeId, body: Bodies[T], signer: Signer, options?: CallOptions): Promise<unknown> {
    const origin = this.#origin(url);
    const toNode = type === 'eval' || type === 'destroy';
    const path = toNode ? `/${to}` : '/';
    const at = toNode ? await this.#containerOf(url) : to;
    for (let attempt = 0; ; attempt++) {
      const ts = Date.now() + (this.#clockOffset.get(origin) ?? 0);
      try {
        return await this.#post(origin, path, sealEnvelope(signer, type, to, body, ts, at), options?.signal);
      } catch (e) {
        // A clock that drifted: learn the container's time and sign again, once. Nothing ran, so this is safe.
        if (attempt === 0 && isKeynodeError(e) && e.code === 'ERR_CLOCK_SKEW' && (e as KeynodeError & { serverTime?: number }).serverTime) {
          this.#clockOffset.set(origin, (e as KeynodeError & { serverTime: number }).serverTime - Date.now());
          continue;
        }
        throw e;
      }
    }
  }

  async #post(origin: string, path: string, envelope: Uint8Array, signal?: AbortSignal): Promise<unknown> {
    if (signal?.aborted) throw abortError(signal);
    let res;
    try {
      res = await this.#pool(origin).request({ path, method: 'POST', body: envelope, headers: { 'content-type': 'application/msgpack' }, signal, headersTimeout: 0, bodyTimeout: 0 });
    } catch (cause) {
      if (signal?.aborted) throw abortError(signal);
      if (isKeynodeError(cause)) throw cause;
      throw new KeynodeError('ERR_UNAVAILABLE', `cannot reach ${origin}: ${rootMessage(cause)}`, { cause });
    }
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await res.body.arrayBuffer());
    } catch (cause) {
      if (signal?.aborted) throw abortError(signal);
      throw new KeynodeError('ERR_UNAVAILABLE', `the reply from ${origin} broke off: ${(cause as Error).message}`, { cause });
    }
    let reply: Reply;
    try {
      reply = decode(bytes) as Reply;
    } catch {
      throw new KeynodeError('ERR_BAD_MESSAGE', `${origin} answered HTTP ${res.statusCode} with a body that is not a keynode reply`);
    }
    if (typeof reply !== 'object' || reply === null || typeof reply.ok !== 'boolean') throw new KeynodeError('ERR_BAD_MESSAGE', `${origin} did not answer as a keynode container`);
    if (reply.ok) return reply.value;
    const err = KeynodeError.fromWire(reply.error);
    const serverTime = Number(res.headers['x-keynode-time']);
    if (Number.isFinite(serverTime)) Object.defineProperty(err, 'serverTime', { value: serverTime, enumerable: false });
    throw err;
  }
}

interface ContainerInfo {
  containerId: NodeId;
  url: string;
  time: number;
  v: number;
  holdGraceMs?: number;
}

export interface BudgetReport {
  principal: NodeId;
  limits: BudgetSpec;
  used: { nodes: number; awake: number; memoryMB: number };
}

/** The innermost cause's message: undici wraps the useful one ("connect ECONNREFUSED ...") in others. */
function rootMessage(e: unknown): string {
  let m = e as { message?: string; cause?: unknown };
  while (m?.cause && typeof m.cause === 'object') m = m.cause as typeof m;
  return m?.message ?? String(e);
}

const MAX_KNOWN_CONTAINERS = 1024;

async function fetchInfo(origin: string, signal?: AbortSignal): Promise<ContainerInfo> {
  let info: ContainerInfo | undefined;
  let status: number;
  try {
    const res = await request(`${origin}/.well-known/keynode`, { signal, headersTimeout: 10_000, bodyTimeout: 10_000 });
    status = res.statusCode;
    info = (await res.body.json().catch(() => undefined)) as ContainerInfo | undefined;
  } catch (cause) {
    if (signal?.aborted) throw abortError(signal);
    throw new KeynodeError('ERR_UNAVAILABLE', `cannot reach a keynode container at ${origin}: ${rootMessage(cause)}`, { cause });
  }
  if (status !== 200 || !info || typeof info.containerId !== 'string') throw new KeynodeError('ERR_UNAVAILABLE', `${origin} is not a keynode container (no /.well-known/keynode)`);
  return info;
}

/**
 * Connects to a container: learns its ID and clock, and returns a client that signs as `identity`.
 * @example
 * await using client = await connect('http://127.0.0.1:7070', { identity });
 */
export async function connect(url: string, options: ConnectOptions = {}): Promise<Client> {
  let origin: string;
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http');
    origin = u.origin;
  } catch {
    throw new KeynodeError('ERR_BAD_URL', `not a container URL (http(s)://host[:port]): ${String(url).slice(0, 80)}`);
  }
  const before = Date.now();
  const info = await fetchInfo(origin, options.signal);
  const offset = info.time - Math.round((before + Date.now()) / 2);
  return new Client(origin, info.containerId, options.identity ?? Identity.generate(), options, Math.abs(offset) > 1000 ? offset : 0, info.holdGraceMs);
}
