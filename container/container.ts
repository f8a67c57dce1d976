/**
 * @module container/container
 * Wires one container together: keyring, store, supervisor and pool, runtime, HTTP server. Start-up reads
 * no node: sleeping nodes cost nothing until a message names them.
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { pino, type Logger } from 'pino';
import { encode, KeynodeError, storageBytes, type Identity, type MemberView, type NodeId, type Reply } from '../protocol/index.js';
import { Store, TombstoneExpiry } from '../store/index.js';
import { normalizeOptions, type ContainerOptions } from './config.js';
import { Keyring } from './keyring.js';
import { claimPrivate } from './data-dir.js';
import { LogBook } from './logbook.js';
import { Metrics } from './edge/metrics.js';
import { Operations } from './edge/operations.js';
import { Fleet } from './fleet/fleet.js';
import { RemotePeers } from './edge/remote.js';
import { ReplayGuard } from './edge/replay.js';
import { CodeCache } from './edge/code-cache.js';
import { AddressLimiter } from './edge/rate-limit.js';
import { SessionEdge, SessionTable } from './edge/sessions.js';
import { Runtime } from './runtime.js';
import { createHttpServer, requestHandler } from './edge/server.js';
import { Dashboard } from './edge/dashboard/dashboard.js';
import { Supervisor } from './supervisor/supervisor.js';
import { workerReadableBy, type WorkerLaunch } from './fleet/worker-process.js';
import { WorkerRegistry } from './fleet/worker-registry.js';
import { admit } from './policies/admission.js';
import { Budgets } from './policies/budgets.js';
import { StorageQuota } from './policies/storage.js';
import { LifetimePolicy } from './policies/lifetime-policy.js';
import { NodeRequests } from './node-requests.js';
import { Spawner } from './policies/spawner.js';
import { peerUrls } from './migration/peers.js';
import { Locator } from './migration/locator.js';
import { Importer } from './migration/importer.js';
import { Mover } from './migration/mover.js';
import { pauseHook } from './migration/pause.js';
import { Membership } from './membership/membership.js';
import { loadReport } from './membership/load-report.js';
import { fleetMetrics } from './membership/metrics.js';

type Status = 'opening' | 'open' | 'closing' | 'closed';

/** Events a container emits, for embedders and tests that wait on them instead of polling. */
export interface ContainerEvents {
  /** A node got a process. */
  wake: [id: NodeId, pid: number];
  /** A node lost its process: slept when idle, crashed, was destroyed, or the container stopped. */
  sleep: [id: NodeId, why: 'idle' | 'crash' | 'destroyed' | 'shutdown'];
  /** A node was destroyed (asked, cascaded, or by its lifetime), with the reason. */
  destroy: [id: NodeId, reason: string];
  /** A Resetting node's state was emptied. */
  reset: [id: NodeId];
  /** A Leased node's check ran: renewed, or failed (a false check or a lost node destroys instead). */
  lease: [id: NodeId, verdict: 'renewed' | 'failed'];
}

export class Container extends EventEmitter<ContainerEvents> {
  readonly options: ContainerOptions;
  readonly logger: Logger;
  #status: Status = 'opening';
  #closing: Promise<void> | undefined;
  #url = '';
  #server!: Server;
  #store!: Store;
  #keyring!: Keyring;
  #fleet!: Fleet;
  #supervisor!: Supervisor;
  #runtime!: Runtime;
  #logbook!: LogBook;
  #remote!: RemotePeers;
  #lifetimes!: LifetimePolicy;
  #tombstones: TombstoneExpiry | undefined;
  #dashboard: Dashboard | undefined;
  #sessions!: SessionEdge;
  #mover!: Mover;
  #importer!: Importer;
  #membership: Membership | undefined;
  readonly #bootedAt = Date.now();

  private constructor(options: ContainerOptions, logger?: Logger) {
    super();
    this.options = options;
    this.logger = logger ?? pino({ level: options.logLevel, base: { service: 'keynode' } });
  }

  /**
   * @example
   * const container = await Container.start({ port: 0, data: '/tmp/kn' });
   * console.log(container.url);
   * await container.close();
   */
  static async start(input: Partial<ContainerOptions> = {}, logger?: Logger): Promise<Container> {
    const c = new Container(normalizeOptions(input), logger);
    try {
      await c.#open();
    } catch (e) {
      await c.#teardown().catch(() => {});
      throw e;
    }
    return c;
  }

  get url(): string {
    return this.#url;
  }

  get status(): Status {
    return this.#status;
  }

  /** The operator identity (created in the data directory on first start). */
  get operator(): Identity {
    return this.#keyring.operator;
  }

  /** The container's ID (the operator's public key): the `to` of container messages. */
  get id(): NodeId {
    return this.#keyring.operator.id;
  }

  get runtime(): Runtime {
    return this.#runtime;
  }

  get supervisor(): Supervisor {
    return this.#supervisor;
  }

  /** Open sessions: how many, opened and evicted so far, and each principal's (tests, metrics). */
  get sessions(): SessionTable {
    return this.#sessions.table;
  }

  /**
   * The other members of this container's fleet (its `peers`, resolved and asked for their load), up or not.
   * @example
   * for (const m of container.members()) console.log(m.url, m.state, m.load?.awake);
   */
  members(): MemberView[] {
    return this.#membership?.members() ?? [];
  }

  /** URLs of the members that answered the last load poll with the identity pinned for them. */
  peerUrls(): string[] {
    return this.#membership?.peerUrls() ?? [];
  }

  /** Asks every member for its load now (tests and `keynode peers` want fresh figures, not the last round's). */
  refreshMembers(): Promise<void> {
    return this.#membership?.refresh() ?? Promise.resolve();
  }

  /** Resolves when the pool of blank workers holds its floor (benchmarks measure wakes from a warm pool). */
  warm(): Promise<void> {
    return this.#fleet.warm();
  }

  /** Moves and drains from this container (container/migration). */
  get mover(): Mover {
    return this.#mover;
  }

  /** Worker processes that serve no node: spares, blanks, and where wakes got their workers so far. */
  get fleet(): ReturnType<Fleet['stats']> {
    return this.#fleet.stats();
  }

  async #open(): Promise<void> {
    const o = this.options;
    // The port first: a container that cannot listen (another one holds the port) must fail before it
    // creates or changes anything in its data directory. Until the handler is attached it answers 503.
    const tls = o.tlsCert && o.tlsKey ? { cert: await readFile(o.tlsCert), key: await readFile(o.tlsKey) } : undefined;
    this.#server = createHttpServer(o, o.maxBodyBytes, tls);
    this.#server.on('request', starting);
    await listen(this.#server, o.port, o.host);
    const opened = await claimPrivate([o.data, join(o.data, 'db')]);
    for (const { path, was } of opened) this.logger.warn({ path, was }, 'others could read the data directory: its mode is now 700');
    this.#keyring = await Keyring.open(o.data);
    this.#store = await Store.open(join(o.data, 'db'), { sync: o.fsync });
    // Holding the store's lock, this is the only container on this data directory: workers recorded there are orphans.
    const { registry, killed } = WorkerRegistry.open(join(o.data, 'workers'));
    if (killed) this.logger.warn({ killed }, 'killed workers left by a previous run of this container');

    this.#logbook = new LogBook(this.#store, o.logLines);
    this.#remote = new RemotePeers(o.maxBodyBytes, { total: o.peerConnections, perTenant: o.peerTenantRequests, queue: o.peerTenantQueue }, o.tlsCa ? await readFile(o.tlsCa) : undefined);
    if (o.workerUid !== undefined) {
      const problem = workerReadableBy(o.workerUid, o.workerGid ?? o.workerUid);
      if (problem) throw new KeynodeError('ERR_UNAVAILABLE', `workers cannot run as uid ${o.workerUid}: ${problem} (install keynode where that user can read it)`);
    }
    const launch: WorkerLaunch = {
      maxFrameBytes: o.maxBodyBytes + 64 * 1024,
      marker: `--keynode-data=${o.data}`,
      ...(o.workerUid !== undefined ? { uid: o.workerUid } : {}),
      ...(o.workerGid !== undefined ? { gid: o.workerGid } : {}),
      ...(o.workerWrapper ? { wrapper: o.workerWrapper.split(' ').filter(Boolean) } : {}),
      ...(registry ? { registry } : {}),
    };

    const { port } = this.#server.address() as AddressInfo;
    const host = o.host.includes(':') ? `[${o.host}]` : o.host;
    this.#url = (o.publicUrl ?? `${tls ? 'https' : 'http'}://${host}:${port}`).replace(/\/+$/, '');

    const runtime = new Runtime(o, this.#store, this.#keyring, this.#logbook, this.#remote, this.#url);
    this.#runtime = runtime;
    const capacity = { ...o.capacity, storageMB: o.capacity.storageMB! }; // normalizeOptions filled it
    const budgets = new Budgets(this.#store, this.id, capacity, (id) => runtime.find(id));
    runtime.budgets = budgets;
    const storage = new StorageQuota(this.#store, budgets);
    runtime.storage = storage;
    this.#logbook.account = async (id) => {
      const rec = await runtime.find(id);
      return rec && budgets.storageAccount(rec);
    };
    const cores = availableParallelism();
    this.#fleet = new Fleet({
      launch,
      defaultMemoryMB: o.memoryMB,
      poolMin: o.poolMin,
      poolMax: o.poolMax,
      reuse: o.workerReuse,
      maxNodesPerWorker: o.workerMaxNodes,
      maxSpares: o.maxSpareWorkers,
      spareIdleMs: o.spareIdleMs,
      busy: () => this.#supervisor.running >= cores,
      maxStarts: cores,
      rssOverheadMB: o.rssOverheadMB,
      memoryLeftMB: () => o.capacity.memoryMB - budgets.awakeUse(this.id).mem,
    });
    const lifetimes = new LifetimePolicy(runtime, (err, what) => this.logger.warn({ err }, `lifetime: ${what} failed`), {
      destroyed: (id, reason) => {
        this.logger.info({ node: id, reason }, 'node destroyed');
        this.emit('destroy', id, reason);
      },
      reset: (id) => this.emit('reset', id),
      leaseChecked: (id, verdict) => this.emit('lease', id, verdict),
    });
    this.#lifetimes = lifetimes;
    runtime.destroy = (id, reason) => lifetimes.destroy(id, reason);
    const spawner = new Spawner(runtime, lifetimes);
    const requests = new NodeRequests(runtime, spawner, lifetimes);
    const metrics = new Metrics(() => this.#supervisor.size, () => [...this.#supervisor.nodes()].reduce((n, a) => n + a.queue.length, 0), () => this.#fleet.stats(), {
      used: async () => (await storage.use([this.id]))[0]!,
      capacity: storageBytes(capacity.storageMB),
    });
    storage.onRefused = (what) => metrics.storageRefusals.inc({ what });
    this.#logbook.onRefused = () => metrics.storageRefusals.inc({ what: 'log' });
    this.#supervisor = new Supervisor(
      { idleTimeoutMs: o.idleTimeoutMs, rssOverheadMB: o.rssOverheadMB, memoryPollMs: o.memoryPollMs, maxQueue: o.maxQueue, maxQueueBytes: o.maxQueueBytes, releaseTimeoutMs: o.releaseTimeoutMs },
      this.#fleet,
      {
        // The node's key is unsealed only when it is needed to sign (runtime.keyOf), never on the wake path.
        beforeWake: (node) => admit(node, budgets, this.#supervisor),
        afterWake: (node) => {
          metrics.wakes.inc({ source: node.source ?? 'new' }); // counted where the wake succeeded, as supervisor.wakes is
          this.emit('wake', node.id, node.worker!.pid!);
        },
        onRequest: (node, req) => requests.handle(node, req),
        onCommit: (node, writes) => requests.commit(node, writes),
        onLog: (node, line) => this.#logbook.append(node.id, line),
        release: (node) => budgets.unreserve(node.chain, node.grantedMB),
        onAsleep: (node, why) => {
          if (why !== 'idle' && why !== 'shutdown' && why !== 'destroyed') metrics.kills.inc({ reason: why });
          node.key = undefined;
          this.emit('sleep', node.id, why);
          if (why === 'destroyed') return;
          void this.#logbook.settle(node.id).catch((err) => this.logger.warn({ err }, 'log trim failed'));
          void lifetimes.onSleep(node).catch((err) => this.logger.warn({ err }, 'recording last activity failed'));
          if (why !== 'shutdown') void lifetimes.collectChildren(node.id).catch((err) => this.logger.warn({ err }, 'ephemeral collection failed'));
        },
        publicUrl: (id) => runtime.urlOf(id),
      },
    );
    runtime.supervisor = this.#supervisor;
    runtime.fleet = () => this.#fleet.stats();
    const operations = new Operations(runtime, spawner, lifetimes, this.id, new CodeCache());
    this.#wireMigration(runtime, lifetimes, operations);
    const operator = this.#keyring.operator;
    const { refused: refusals } = fleetMetrics(metrics.registry, () => this.members());
    const membership = new Membership({
      self: { id: this.id, url: this.#url },
      peers: o.peers ?? [],
      allowedIds: o.peerIds as NodeId[] | undefined,
      identity: operator,
      remote: this.#remote,
      refreshMs: o.fleetRefreshMs,
      resolveMs: o.fleetResolveMs,
      logger: this.logger,
      onRefused: (peer) => refusals.inc({ peer }),
    });
    this.#membership = membership;
    runtime.peers.admits = (origin, id) => membership.admits(origin, id);
    operations.loadReport = (asker) => loadReport({ id: this.id, url: this.#url, runtime, budgets, capacity: o.capacity, members: () => membership.members() }, asker);
    this.#sessions = new SessionEdge({
      containerId: this.id,
      sign: (m) => operator.sign(m),
      boxKey: this.#keyring.box.publicKey,
      maxBodyBytes: o.maxBodyBytes,
      limiter: new AddressLimiter(o.handshakeRate, o.handshakeBurst),
      table: new SessionTable({ ttlMs: o.sessionTtlMs, maxSessions: o.maxSessions, maxPerPrincipal: o.maxSessionsPerPrincipal }),
      ttlMs: o.sessionTtlMs,
    });
    if (o.dashboard === 'on') {
      const dashboard = new Dashboard({ runtime, operator: this.id, containerId: this.id, url: this.#url, logger: this.logger, capacityMB: o.capacity.memoryMB, fleet: () => this.#fleet.stats() });
      metrics.observer = (type, code, ms) => dashboard.live.observe(type, code, ms);
      this.on('destroy', () => dashboard.live.recount());
      this.#dashboard = dashboard;
    }
    this.#server.off('request', starting);
    this.#server.on(
      'request',
      requestHandler({
        operations,
        replay: new ReplayGuard(o.skewMs, this.#bootedAt),
        metrics,
        logger: this.logger,
        maxBodyBytes: o.maxBodyBytes,
        maxInflightBytes: o.maxInflightBytes,
        info: () => ({ containerId: this.id, url: this.#url, holdGraceMs: o.holdGraceMs, boxKey: Buffer.from(this.#keyring.box.publicKey).toString('base64url') }),
        containerId: this.id,
        // A draining container takes no new nodes: out of the client Service's endpoints, still reachable by its own URL.
        ready: () => this.#status === 'open' && !this.#mover?.draining,
        overloaded: (id) => (this.#supervisor.get(id)?.queue.length ?? 0) >= o.maxQueue,
        sessions: this.#sessions,
        sign: (m) => operator.sign(m),
        bootedAt: this.#bootedAt,
        skewMs: o.skewMs,
        ...(this.#dashboard ? { dashboard: this.#dashboard.handle.bind(this.#dashboard) } : {}),
      }),
    );
    await lifetimes.start();
    this.#fleet.fill();
    void this.#store.resumeCleanups().catch((err) => this.logger.error({ err }, 'resuming interrupted cleanups failed'));
    this.#tombstones = new TombstoneExpiry(this.#store, o.tombstoneTtlMs, (err) => this.logger.error({ err }, 'expiring tombstones failed'));
    this.#tombstones.start();
    runtime.tombstonesExpired = () => this.#tombstones?.expired ?? 0;
    this.#status = 'open';
    membership.start();
    this.logger.info({ url: this.#url, data: o.data, operator: this.id }, 'keynode container started');
  }

  #wireMigration(runtime: Runtime, lifetimes: LifetimePolicy, operations: Operations): void {
    const o = this.options;
    const peers = peerUrls(o, new URL(this.#url).origin, () => this.#membership?.peerUrls() ?? []);
    // Crash tests hold every move at one phase (KEYNODE_TEST_MOVE_PAUSE) and kill the container there.
    const onPhase = pauseHook(process.env.KEYNODE_TEST_MOVE_PAUSE, (phase, node) => this.logger.info({ phase, node }, 'move paused'));
    const timeoutMs = Math.max(10_000, o.requestTimeoutMs);
    const locator = new Locator({
      peers,
      self: new URL(this.#url).origin,
      ask: async (origin, id, ms) => (await runtime.peers.request(origin, 'locate', { node: id }, ms)) as { url?: unknown },
    });
    runtime.locate = (id) => locator.locate(id);
    runtime.peerOrigins = peers;
    this.#importer = new Importer({
      rt: runtime,
      lifetimes,
      // A peer's ID is learned from its signed answer at its configured URL; an import names its sender by the
      // session it came in, so only a container holding a peer's key can move nodes here.
      // The first peer whose ID matches answers: a peer that is down costs a wait only when none matches.
      peerOrigin: (from) =>
        new Promise((resolve) => {
          const all = peers();
          let left = all.length;
          if (!left) return resolve(undefined);
          for (const origin of all) {
            runtime.peers.containerIdOf(origin, 5_000).then(
              (id) => id === from && resolve(origin),
              () => {},
            ).finally(() => --left === 0 && resolve(undefined));
          }
        }),
      locate: async (origin, id) => (await runtime.peers.request(origin, 'locate', { node: id }, 5_000)) as { url?: string; move?: string },
      forget: (id) => locator.forget(id),
      onPhase,
    });
    this.#mover = new Mover({
      rt: runtime, lifetimes, peers, forget: (id) => locator.forget(id), onPhase, requestTimeoutMs: timeoutMs,
      moved: (r) => this.logger.info({ node: r.id, to: r.to, nodes: r.nodes, bytes: r.bytes, ms: r.ms }, 'node moved'),
    });
    operations.migration = { mover: this.#mover, importer: this.#importer };
  }

  /** Graceful and idempotent: stop accepting, let evals in flight finish or time out, sleep every node, close the store. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#status = 'closing';
      await this.#teardown();
      this.#status = 'closed';
      this.logger.info('keynode container stopped');
    })();
    return this.#closing;
  }

  async #teardown(): Promise<void> {
    const serverClosed = this.#server?.listening ? new Promise<void>((r) => this.#server.close(() => r())) : Promise.resolve();
    this.#server?.closeIdleConnections();
    this.#dashboard?.close();
    this.#membership?.close();
    // Lifetime handlers may be waiting on evals: both stop before the store closes.
    await Promise.all([this.#lifetimes?.close(), this.#supervisor?.close(), this.#tombstones?.close()]);
    await this.#fleet?.close();
    await this.#logbook?.close();
    this.#server?.closeAllConnections();
    await serverClosed;
    await this.#remote?.close();
    this.#sessions?.table.close();
    await this.#keyring?.close();
    await this.#store?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EADDRINUSE') return reject(e);
      reject(new KeynodeError('ERR_PORT_IN_USE', `port ${port} on ${host} is in use (another keynode container?); nothing was written to the data directory. Start this one on another port: --port <n> (or KEYNODE_PORT), or --port 0 for any free one`, { cause: e }));
    });
    server.listen(port, host, () => resolve());
  });
}

/** Requests that arrive while the store opens: refused as the container would refuse them while stopping. */
function starting(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const body = encode({ ok: false, error: { code: 'ERR_UNAVAILABLE', message: 'the container is starting; retry shortly' } } satisfies Reply);
  res.writeHead(503, { 'content-type': 'application/msgpack', 'content-length': body.length }).end(body);
}
