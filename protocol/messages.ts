/**
 * @module protocol/messages
 * Every message in keynode, as one discriminated union per channel:
 * - principal → container (signed envelopes over HTTP): `MessageType` and its `Body`;
 * - container ↔ worker (frames over stdio): `ToWorker` and `FromWorker`.
 */
import type { WireError } from './errors.js';
import type { NodeId } from './ids.js';
import type { BudgetSpec, LifetimeKind, RefsMode, SandboxSpec } from './policy.js';

export const PROTOCOL_VERSION = 3;

/** Bodies of signed messages from principals, keyed by envelope `type`. */
export interface Bodies {
  /**
   * To the container. Spawns `count` nodes (default 1) with the same policies. A client that binds
   * capabilities with keys it holds picks the nodes' keys itself (`keys`) so it can sign their grants.
   */
  spawn: {
    lifetime: unknown; sandbox?: unknown; acl?: unknown; budget?: unknown; count?: number;
    /** One entry per node whose key the client chose, with the grants it signed; `seed` is filled in from `seeds` by the container (never sent in clear). */
    keys?: { seed: Uint8Array; grants?: Record<string, Uint8Array> }[];
    /** The chosen seeds, 32 bytes each for every entry of `keys`, in a nacl box to the container's box key. */
    seeds?: SealedBox;
    /** The spawner's X25519 key: the new nodes' private keys come back in a nacl box to it, never in clear. */
    sealTo?: Uint8Array;
  };
  /**
   * To a node: run `fn(ctx, ...args)`; `args` is the MessagePack encoding of an array. `fn` is the source, or
   * `h` its SHA-256 (hex) once this container has it. `cap` presents a grant; `chain` lists the nodes waiting on
   * this call (across containers), so a call back into one of them ends with ERR_CYCLE.
   */
  eval: { fn?: string; h?: string; args: Uint8Array; cap?: { name: string; grant: Uint8Array; args?: Uint8Array }; chain?: NodeId[] };
  /** To a node, signed by the node's own key (or an ancestor's). */
  destroy: Record<string, never>;
  /** To the container: status and policies of a node (its ancestors and the operator). */
  describe: { node: NodeId };
  /** To the container: list nodes (operator). */
  list: { after?: NodeId; limit?: number };
  /** To the container: the node's log lines after `after` (its ancestors and the operator). */
  logs: { node: NodeId; after?: number; limit?: number };
  /** To the container: counters (operator). */
  stats: Record<string, never>;
  /** To the container: the operator destroys a node without its key. */
  forceDestroy: { node: NodeId };
  /** To the container: give a principal a budget (operator, or anyone from its own budget). */
  grant: { principal: NodeId; budget: Partial<BudgetSpec> };
  /** To the container: a principal's budget limits and use. */
  budget: { principal?: NodeId };
  /** To the container: keep ephemeral children alive (client library heartbeat). */
  renew: { nodes: NodeId[] };
  /** To the container: a parent narrows or widens its child's ACL and sandbox. */
  update: { node: NodeId; acl?: unknown; sandbox?: unknown };
  /** To the container (operator): the next page of backup `session`, or the first of a new snapshot. */
  backup: { session?: string };
  /** To the container, always a one-off signed envelope: open a session (protocol/session.ts). */
  hello: { epk: Uint8Array };
  /** To the container where the node lives: move it (with its subtree) to the peer container at `to` (its ancestors and the operator). */
  move: { node: NodeId; to: string };
  /** To the container (operator): move every node off it to its peers, then report. */
  drain: { concurrency?: number };
  /** Container to container: where does this node live? Answered from one store read, never asked on. */
  locate: { node: NodeId };
  /** Container to peer container: part of the state of a move, kept aside until the move activates. */
  moveChunk: { move: string; node: NodeId; part: number; entries: [string, string, Uint8Array][] };
  /** Container to peer container: the records of a move (keys sealed to the target's box key); durable once answered. */
  movePrepare: { move: string; node: NodeId; parts: number; records: unknown[]; seeds: SealedBox };
  /** Container to peer container: the source has committed its forwarding record; serve the nodes. */
  moveActivate: { move: string; node: NodeId };
  /** To the container, from anyone in a session: its load, the asker's room there, and the fleet's members (protocol/load.ts). */
  load: Record<string, never>;
}

/** A nacl box (X25519 + XSalsa20-Poly1305): `pk` is the sender's box key. */
export interface SealedBox {
  pk: Uint8Array;
  nonce: Uint8Array;
  box: Uint8Array;
}

export type MessageType = keyof Bodies;
export const MESSAGE_TYPES: ReadonlySet<string> = new Set<MessageType>([
  'spawn', 'eval', 'destroy', 'describe', 'list', 'logs', 'stats', 'forceDestroy', 'grant', 'budget', 'renew', 'update', 'backup', 'hello', 'load',
  'move', 'drain', 'locate', 'moveChunk', 'movePrepare', 'moveActivate',
]);

/** A verified envelope: who sent what to whom. */
export interface Envelope<T extends MessageType = MessageType> {
  v: number;
  type: T;
  from: NodeId;
  /** The node for node messages, the container's ID for container messages. */
  to: NodeId;
  /** The container the message is for (its ID); any other container refuses it. */
  at: NodeId;
  ts: number;
  nonce: Uint8Array;
  body: Bodies[T];
}

/** HTTP response body. `value` of an eval is the MessagePack encoding of the result. */
export type Reply = { ok: true; value: unknown } | { ok: false; error: WireError };

export type NodeStatus = 'asleep' | 'idle' | 'active';

export interface NodeInfo {
  id: NodeId;
  url: string;
  status: NodeStatus;
  pid?: number;
  lifetime: unknown;
  parent: NodeId;
  sandbox: SandboxSpec;
  acl: string[];
  budget: BudgetSpec;
  createdAt: number;
  lastActivity?: number;
  memoryMB?: number;
  uptimeMs?: number;
  /** Bytes its subtree stores (refs, indexes, logs): what counts against `budget.storageMB`. */
  storageBytes?: number;
  /** Bytes it stores itself. */
  ownStorageBytes?: number;
}

/** What the worker needs to know of its node. Never its private key. */
export interface WorkerNode {
  id: NodeId;
  url: string;
  parent: NodeId;
  refs: RefsMode;
  log: boolean;
  capabilities: string[];
  spawn: false | { lifetimes: LifetimeKind[] };
  maxMessageBytes: number;
}

/** Container → worker. */
export type ToWorker =
  | { type: 'become'; node: WorkerNode }
  /** `h` names the function (SHA-256 of its source); `fn` comes along when the worker may not have it yet. */
  | { type: 'eval'; id: number; h: string; fn?: string; args: Uint8Array; from: NodeId }
  | { type: 'reply'; id: number; ok: true; value: unknown }
  | { type: 'reply'; id: number; ok: false; error: WireError }
  /** Forget the node entirely (its Compartment, compiled functions, pending requests); answer `released`. */
  | { type: 'release' }
  | { type: 'stop' };

/** A write an eval made; committed only if the eval returns. */
export type Write =
  | { op: 'ref'; name: string; value: Uint8Array }
  | { op: 'put'; name: string; key: string; value: Uint8Array }
  | { op: 'del'; name: string; key: string };

/** Requests a worker makes of the container during an eval. */
export type WorkerRequest =
  | { op: 'ref.get'; name: string }
  | { op: 'index.get'; name: string; key: string }
  | { op: 'index.entries'; name: string; prefix?: string; limit?: number }
  | { op: 'at'; node: string; fn: string; args: Uint8Array }
  | { op: 'cap'; name: string; args: Uint8Array }
  | { op: 'spawn'; spec: unknown }
  | { op: 'destroy'; node: string }
  | { op: 'destroySelf' };

/** Worker → container. */
export type FromWorker =
  | { type: 'ready'; pid: number }
  | { type: 'idle' }
  /** The node is forgotten and every microtask it left has run; `heapUsed` is the V8 heap in bytes after that. */
  | { type: 'released'; heapUsed: number }
  /** The worker took eval `id` and is about to run user code: from here a crash may have had effects. */
  | { type: 'started'; id: number }
  | { type: 'request'; id: number; eval: number; req: WorkerRequest }
  | { type: 'log'; eval: number; line: string }
  | { type: 'result'; id: number; ok: true; value: Uint8Array; writes: readonly Write[] }
  | { type: 'result'; id: number; ok: false; error: WireError };

/** The reply to `move`: the node's URL now, and what moved. */
export interface MoveResult {
  id: NodeId;
  /** The node's URL now. */
  url: string;
  from: string;
  to: string;
  /** Nodes that moved: the node and every node under it (0 when it was there already). */
  nodes: number;
  bytes: number;
  ms: number;
}

/** The reply to `drain`. */
export interface DrainReport {
  /** Nodes moved (each with its subtree, counted in `nodes`). */
  moved: number;
  nodes: number;
  failed: { id: NodeId; code: string; message: string }[];
  /**
   * Ephemeral nodes held by clients, left in place: their keys live only in this container's memory and they
   * end with its boot, as their lifetime says (an Ephemeral node under another node moves with it).
   */
  ephemeral: number;
  /** Nodes each peer took. */
  peers: Record<string, number>;
  ms: number;
  nodesPerSecond: number;
}
