/**
 * @module container/config
 * Container options: defaults, `KEYNODE_*` environment variables, and validation that names the option.
 */
import { resolve } from 'node:path';
import { isNodeId, KeynodeError } from '../protocol/index.js';

export interface ContainerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Data directory: LevelDB, operator.key, master.key. */
  data: string;
  /** URL peers use to reach this container; default `http://host:port`. */
  publicUrl?: string;
  /**
   * The other containers of this fleet: URLs (`http(s)://host:port`), or `dns:<name>:<port>[:http|https]` for a
   * name that resolves to every member (a Kubernetes headless Service). Empty: a container on its own.
   */
  peers?: string[];
  /**
   * Container IDs allowed as members. Unset: each peer's ID is pinned on first contact. Set (e.g. from the
   * keys made before a deploy): a peer whose ID is not listed is refused even on first contact.
   */
  peerIds?: string[];
  /** How often this container asks each member of its fleet for its load (one authenticated request each). */
  fleetRefreshMs: number;
  /** How often `dns:` peers are resolved again (pods come and go). */
  fleetResolveMs: number;
  /** An idle node is put to sleep after this long without work. */
  idleTimeoutMs: number;
  /** A destroyed node's ID answers ERR_NODE_DESTROYED (and cannot be spawned again) this long; then it is unknown. */
  tombstoneTtlMs: number;
  /** Default and ceiling of `sandbox.timeoutMs`. */
  evalTimeoutMs: number;
  maxEvalTimeoutMs: number;
  /** Default `sandbox.memoryMB` (V8 heap of the node's process) and its ceiling. */
  memoryMB: number;
  maxMemoryMB: number;
  /** Memory a worker may use beyond its heap grant (code, stacks, buffers) before it is killed. */
  rssOverheadMB: number;
  /** How often awake workers' resident memory is read. */
  memoryPollMs: number;
  /** Largest request body; also the ceiling of `sandbox.maxMessageBytes`. */
  maxBodyBytes: number;
  /** Default `sandbox.maxMessageBytes`. */
  maxMessageBytes: number;
  /** Accepted difference between a message's `ts` and this container's clock. */
  skewMs: number;
  /** Evals that may wait for one node before more are refused with ERR_OVERLOADED. */
  maxQueue: number;
  /** Bytes of evals that may wait for one node. */
  maxQueueBytes: number;
  /** Bytes of request bodies the container holds at once, across all connections, before it refuses more. */
  maxInflightBytes: number;
  /** Open connections at most. */
  maxConnections: number;
  /** Sockets (requests in flight) to one peer container, shared by all tenants. */
  peerConnections: number;
  /** Requests one tenant may have in flight to one peer container; more wait. */
  peerTenantRequests: number;
  /** Requests one tenant may have waiting for one peer container before more are refused with ERR_OVERLOADED. */
  peerTenantQueue: number;
  /** Pre-started blank workers (default heap size) always kept ready: the floor of the adaptive pool. */
  poolMin: number;
  /** The most blank workers the pool grows to under bursts of wakes that find no reusable worker. */
  poolMax: number;
  /** 'tenant': a sleeping node's worker is scrubbed and reused for the next node of its tenant; 'off': one process per wake. */
  workerReuse: 'off' | 'tenant';
  /** Nodes one worker process serves, one after another, before it is retired (with up to 10% jitter). */
  workerMaxNodes: number;
  /** Scrubbed workers kept for their tenants' next wakes, across all tenants. */
  maxSpareWorkers: number;
  /** A spare worker not taken within this long is retired. */
  spareIdleMs: number;
  /** A worker that takes longer than this to forget its node is killed instead of reused. */
  releaseTimeoutMs: number;
  /** Log lines kept per node. */
  logLines: number;
  /** fsync every commit (survives power loss; default survives process kill only). */
  fsync: boolean;
  /** How long a client's holds on Ephemeral nodes last without renewal. */
  holdGraceMs: number;
  /**
   * Root budget held by the operator. `storageMB` (MiB, fractions allowed) bounds what all nodes store
   * together; optional so that embedders who name the other three keep compiling (normalizeOptions fills it).
   */
  capacity: { maxNodes: number; maxAwake: number; memoryMB: number; storageMB?: number };
  /** Consecutive failed lease checks that destroy a Leased node. */
  leaseFailures: number;
  /** Deepest spawn tree. */
  maxDepth: number;
  /** Shortest period of a Resetting or Leased node, in ms. */
  minPeriodMs: number;
  /** HTTP: time to receive a whole request / its headers (slow clients are cut off after this). */
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  /** pino level. */
  logLevel: string;
  /** The operator's live dashboard under /dashboard/ (every data route needs a session opened with an operator-signed link). */
  dashboard: 'on' | 'off';
  /** Run workers as this uid/gid (a wall beyond the language sandbox; needs a container that may switch users). */
  workerUid?: number;
  workerGid?: number;
  /** A command prefix workers run under, e.g. "unshare --net --" (no network) or "prlimit --nofile=64 --". */
  workerWrapper?: string;
  /** PEM files: serve HTTPS with this certificate chain and private key (node URLs are then https://). */
  tlsCert?: string;
  tlsKey?: string;
  /** PEM file of certificates to trust for peer containers served over TLS (besides the system's). */
  tlsCa?: string;
  /** A session ends this long after it was opened (its client opens another first). */
  sessionTtlMs: number;
  /** Sessions held at once, and per principal; past either, the oldest ends. */
  maxSessions: number;
  maxSessionsPerPrincipal: number;
  /** Signed work a source address may cause (session handshakes, signed clocks, "no such session"): per second, and in a burst. */
  handshakeRate: number;
  handshakeBurst: number;
}

// 10 GiB of tenant data: a disk's worth on a small host; set it to what the data directory's disk can spare.
const DEFAULT_STORAGE_MB = 10 * 1024;

export const DEFAULTS: ContainerOptions = {
  host: '127.0.0.1',
  port: 7070,
  data: './.keynode',
  fleetRefreshMs: 2000,
  fleetResolveMs: 15_000,
  idleTimeoutMs: 30_000,
  tombstoneTtlMs: 30 * 24 * 3_600_000,
  evalTimeoutMs: 5_000,
  maxEvalTimeoutMs: 300_000,
  memoryMB: 64,
  maxMemoryMB: 4096,
  rssOverheadMB: 96,
  memoryPollMs: 100,
  maxBodyBytes: 16 * 1024 * 1024,
  maxMessageBytes: 1024 * 1024,
  skewMs: 30_000,
  poolMin: 2,
  poolMax: 8,
  workerReuse: 'tenant',
  workerMaxNodes: 1000,
  maxSpareWorkers: 64,
  spareIdleMs: 60_000,
  releaseTimeoutMs: 1000,
  maxQueue: 1024,
  maxQueueBytes: 64 * 1024 * 1024,
  maxInflightBytes: 256 * 1024 * 1024,
  maxConnections: 10_000,
  peerConnections: 256,
  peerTenantRequests: 16,
  peerTenantQueue: 256,
  logLines: 1000,
  fsync: false,
  holdGraceMs: 30_000,
  capacity: { maxNodes: 10_000_000, maxAwake: 1000, memoryMB: 16 * 1024, storageMB: DEFAULT_STORAGE_MB },
  leaseFailures: 3,
  maxDepth: 32,
  minPeriodMs: 1000,
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  logLevel: 'info',
  dashboard: 'on',
  sessionTtlMs: 3_600_000,
  maxSessions: 100_000,
  maxSessionsPerPrincipal: 64,
  handshakeRate: 100,
  handshakeBurst: 1000,
};

const NUMERIC: (keyof ContainerOptions)[] = [
  'port', 'idleTimeoutMs', 'evalTimeoutMs', 'maxEvalTimeoutMs', 'memoryMB', 'maxMemoryMB', 'rssOverheadMB', 'memoryPollMs',
  'maxBodyBytes', 'maxMessageBytes', 'skewMs', 'poolMin', 'poolMax', 'workerMaxNodes', 'maxSpareWorkers', 'spareIdleMs', 'releaseTimeoutMs', 'maxQueue', 'maxQueueBytes', 'maxInflightBytes', 'maxConnections', 'peerConnections', 'peerTenantRequests', 'peerTenantQueue', 'logLines', 'holdGraceMs', 'leaseFailures', 'maxDepth', 'minPeriodMs', 'requestTimeoutMs', 'headersTimeoutMs',
  'tombstoneTtlMs', 'sessionTtlMs', 'maxSessions', 'maxSessionsPerPrincipal', 'handshakeRate', 'handshakeBurst', 'fleetRefreshMs', 'fleetResolveMs',
];

function envName(key: string): string {
  return `KEYNODE_${key.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase()}`;
}

/** Options from `KEYNODE_*` variables: KEYNODE_PORT, KEYNODE_IDLE_TIMEOUT_MS, KEYNODE_DATA, ... */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<ContainerOptions> {
  if (env.KEYNODE_POOL_SIZE) bad('KEYNODE_POOL_SIZE is now KEYNODE_POOL_MIN (the pool adapts between KEYNODE_POOL_MIN and KEYNODE_POOL_MAX)');
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(DEFAULTS) as (keyof ContainerOptions)[]) {
    if (key === 'capacity') continue;
    const raw = env[envName(key)];
    if (raw === undefined || raw === '') continue;
    if (NUMERIC.includes(key)) out[key] = Number(raw);
    else if (key === 'fsync') out[key] = raw === '1' || raw === 'true';
    else out[key] = raw;
  }
  if (env.KEYNODE_WORKER_UID) out.workerUid = Number(env.KEYNODE_WORKER_UID);
  if (env.KEYNODE_WORKER_GID) out.workerGid = Number(env.KEYNODE_WORKER_GID);
  if (env.KEYNODE_WORKER_WRAPPER) out.workerWrapper = env.KEYNODE_WORKER_WRAPPER;
  if (env.KEYNODE_PUBLIC_URL) out.publicUrl = env.KEYNODE_PUBLIC_URL;
  if (env.KEYNODE_PEERS) out.peers = parsePeers(env.KEYNODE_PEERS);
  if (env.KEYNODE_PEER_IDS) out.peerIds = parsePeers(env.KEYNODE_PEER_IDS);
  if (env.KEYNODE_TLS_CERT) out.tlsCert = env.KEYNODE_TLS_CERT;
  if (env.KEYNODE_TLS_KEY) out.tlsKey = env.KEYNODE_TLS_KEY;
  if (env.KEYNODE_TLS_CA) out.tlsCa = env.KEYNODE_TLS_CA;
  const cap: Record<string, number> = {};
  for (const [k, name] of [['maxNodes', 'KEYNODE_CAPACITY_NODES'], ['maxAwake', 'KEYNODE_CAPACITY_AWAKE'], ['memoryMB', 'KEYNODE_CAPACITY_MEMORY_MB'], ['storageMB', 'KEYNODE_CAPACITY_STORAGE_MB']] as const) {
    if (env[name]) cap[k] = Number(env[name]);
  }
  if (Object.keys(cap).length) out.capacity = { ...DEFAULTS.capacity, ...cap };
  return out as Partial<ContainerOptions>;
}

/** A comma- or space-separated list of peers, as `--peers` and KEYNODE_PEERS take it. */
export function parsePeers(list: string): string[] {
  return list.split(/[\s,]+/).filter(Boolean);
}

function checkPeer(peer: unknown): string {
  if (typeof peer !== 'string') bad(`Expected each of \`peers\` to be a string, got ${typeof peer}`);
  if (/^dns:[A-Za-z0-9.-]+:\d{1,5}(:https?)?$/.test(peer)) return peer;
  let url: URL;
  try {
    url = new URL(peer);
  } catch {
    bad(`Expected each of \`peers\` to be an http(s) URL or dns:<name>:<port>, got \`${peer}\``);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname.replace(/\/+$/, '') !== '' || url.search || url.hash || url.username) {
    bad(`Expected each of \`peers\` to be a container's origin (http(s)://host:port), got \`${peer}\``);
  }
  return url.origin;
}

function bad(message: string): never {
  throw new KeynodeError('ERR_BAD_POLICY', message);
}

export function normalizeOptions(input: Partial<ContainerOptions> = {}): ContainerOptions {
  const o: ContainerOptions = { __proto__: null, ...DEFAULTS, ...input, capacity: { ...DEFAULTS.capacity, ...input.capacity } } as ContainerOptions;
  o.capacity.storageMB ??= DEFAULT_STORAGE_MB;
  const optional = new Set(['publicUrl', 'peers', 'peerIds', 'workerUid', 'workerGid', 'workerWrapper', 'tlsCert', 'tlsKey', 'tlsCa']);
  const renamed: Record<string, string> = { poolSize: 'poolMin' };
  for (const key of Object.keys(input)) {
    if (key in renamed) bad(`The container option \`${key}\` is now \`${renamed[key]}\``);
    if (!(key in DEFAULTS) && !optional.has(key)) bad(`Unknown container option \`${key}\``);
  }
  for (const key of ['workerUid', 'workerGid'] as const) {
    const v = o[key];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) bad(`Expected the \`${key}\` option to be a non-negative integer, got \`${String(v)}\``);
  }
  for (const key of NUMERIC) {
    const v = o[key] as number;
    const min = ['port', 'poolMin', 'poolMax', 'maxSpareWorkers', 'peerTenantQueue'].includes(key) ? 0 : 1;
    if (!Number.isSafeInteger(v) || v < min) bad(`Expected the \`${key}\` option to be an integer of at least ${min}, got \`${String(v)}\` (${typeof v})`);
  }
  if (o.port > 65535) bad(`Expected the \`port\` option to be at most 65535, got \`${o.port}\``);
  for (const [k, v] of Object.entries(o.capacity)) {
    if (k === 'storageMB' ? typeof v !== 'number' || !Number.isFinite(v) || v < 0 : !Number.isSafeInteger(v) || v < 0) {
      bad(`Expected \`capacity.${k}\` to be a non-negative ${k === 'storageMB' ? 'number' : 'integer'}, got \`${String(v)}\``);
    }
  }
  if (o.evalTimeoutMs > o.maxEvalTimeoutMs) bad('`evalTimeoutMs` must not exceed `maxEvalTimeoutMs`');
  if (o.memoryMB > o.maxMemoryMB || o.memoryMB < 16) bad('`memoryMB` must be at least 16 and not exceed `maxMemoryMB`');
  if (o.maxMessageBytes > o.maxBodyBytes) bad('`maxMessageBytes` must not exceed `maxBodyBytes`');
  if (o.peerTenantRequests > o.peerConnections) bad('`peerTenantRequests` must not exceed `peerConnections`');
  if (o.dashboard !== 'on' && o.dashboard !== 'off') bad(`Expected the \`dashboard\` option to be 'on' or 'off', got \`${String(o.dashboard)}\``);
  if (o.workerReuse !== 'off' && o.workerReuse !== 'tenant') bad(`Expected the \`workerReuse\` option to be 'off' or 'tenant', got \`${String(o.workerReuse)}\``);
  if (input.poolMax === undefined) o.poolMax = Math.max(o.poolMax, o.poolMin);
  if (o.poolMin > o.poolMax) bad('`poolMin` must not exceed `poolMax`');
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) bad('`tlsCert` and `tlsKey` go together: give both (PEM files) to serve HTTPS, or neither');
  if (o.peers !== undefined) {
    if (!Array.isArray(o.peers)) bad('Expected the `peers` option to be an array of URLs');
    o.peers = [...new Set(o.peers.map(checkPeer))];
  }
  if (o.peerIds !== undefined) {
    if (!Array.isArray(o.peerIds) || !o.peerIds.every((id) => isNodeId(id))) {
      bad(`Expected \`peerIds\` to be container IDs (52 lowercase base32 characters, as \`keynode identity show <data>/operator.key\` prints), got \`${String(o.peerIds).slice(0, 120)}\``);
    }
    o.peerIds = [...new Set(o.peerIds)];
  }
  o.data = resolve(o.data);
  return o;
}
