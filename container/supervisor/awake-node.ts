/**
 * @module container/supervisor/awake-node
 * An entry of the status map: a node with a process (or about to have one). Sleeping nodes have no entry.
 */
import type { KeyObject } from 'node:crypto';
import type { KeynodeError, NodeId, NodeStatus } from '../../protocol/index.js';
import type { NodeRecord } from '../../store/index.js';
import type { EvalTicket, WorkerProcess } from '../fleet/worker-process.js';
import type { WorkerSource } from '../fleet/fleet.js';

/** Work the container does on a node's state between evals (a Resetting node's reset). */
export interface Task {
  task: () => Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

/** One eval waiting for, or holding, its node. */
export interface Job {
  task?: undefined;
  fn: string;
  /** SHA-256 of `fn` (hex): the worker is sent the hash alone once it has compiled the function. */
  h: string;
  args: Uint8Array;
  from: NodeId;
  /** Set when the eval is part of a call chain, so a nested eval cannot outlive its caller. */
  deadline?: number;
  /** Nodes of this container whose evals are waiting on this one (to refuse calls back into them). */
  chain?: NodeId[];
  /**
   * Decides again, as the eval leaves the queue, whether its sender may still run it on the node's current
   * record (throws the refusal). Access can be revoked while an eval waits; a check made only on arrival
   * would let a queue of them run for as long as the queue lasts.
   */
  admit?: (rec: NodeRecord) => void;
  /** Requeued once already because its worker died before it could have started it. */
  retried?: boolean;
  /** The worker said it does not have this function: send the source this time. */
  withSource?: boolean;
  resolve(value: Uint8Array): void;
  reject(error: KeynodeError): void;
}

/** 'asleep' only between the entry's creation and its first wake, or after a crash with work still queued. */
export type AwakeStatus = 'asleep' | 'waking' | 'idle' | 'active' | 'committing' | 'stopping';

export class AwakeNode {
  readonly id: NodeId;
  rec: NodeRecord;
  status: AwakeStatus = 'asleep';
  worker: WorkerProcess | undefined;
  readonly queue: (Job | Task)[] = [];
  /** `ticket`: whether its worker may have run it (see WorkerProcess.mayHaveRun). */
  /** `acted`: the eval made a ctx request or logged, so something of it was seen outside its worker. */
  running: { job: Job; evalId: number; timer: NodeJS.Timeout; deadline: number; ticket?: EvalTicket; acted?: boolean } | undefined;
  lastActivity = Date.now();
  /** After a result, the worker has not said idle yet: the eval's kill timer still runs, no new eval starts. */
  settling: NodeJS.Timeout | undefined;
  wokenAt = 0;
  /** Evals this node has run since it woke: a node woken for one eval is the first to give up its worker. */
  evals = 0;
  /** Woken shortly after its worker was taken for another node: it is in use, so it counts as hot. */
  returned = false;
  /** Where this wake's worker came from. */
  source: WorkerSource | undefined;
  /** When its worker's resident memory is next read (idle workers less often than busy ones). */
  nextMemoryCheck = 0;
  /** Put it to sleep at its next quiet moment (its isolation changed while it was awake). */
  moveOut = false;
  /** Memory granted at wake, counted against budgets while awake. */
  grantedMB = 0;
  /** Unsealed private key, held only while awake (or for Ephemeral nodes, in the container's memory). */
  key: KeyObject | undefined;
  destroyed = false;
  /** Holds a budget reservation and has (or had) a process since its entry was made. */
  wasAwake = false;
  /** Holds a budget reservation right now (between a successful admission and its process's end). */
  reserved = false;
  /** When a Resetting node's activity was last written to the store. */
  lifeWrittenAt = 0;
  /** The budget holders this wake was counted against. */
  chain: string[] = [];
  /** Set by ctx.destroySelf() to that eval's ID: if the eval returns, its writes are dropped and the node ends. */
  selfDestruct: number | undefined;
  /** ctx requests of the running eval not answered yet. */
  requests = 0;
  /**
   * Hashes of functions sent to this wake's worker with their source, oldest first: a guess of what its
   * Compartment has compiled, kept smaller than the worker's own cache. A wrong guess costs a resend.
   */
  readonly code = new Set<string>();
  /** Bytes of the evals in `queue`. */
  queuedBytes = 0;
  /** Called when the eval in flight has its outcome (graceful shutdown waits on this). */
  readonly settled: (() => void)[] = [];
  #nextEval = 1;
  #changed: (() => void)[] = [];

  constructor(rec: NodeRecord) {
    this.id = rec.id;
    this.rec = rec;
  }

  nextEvalId(): number {
    return this.#nextEval++;
  }

  /** Resolves at the node's next change of state (said idle, slept, lost its process, was forgotten). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#changed.push(resolve));
  }

  signal(): void {
    for (const f of this.#changed.splice(0)) f();
  }

  /** Nothing running, nothing settling, nothing queued: it may give up its worker now. */
  get quiet(): boolean {
    return this.status === 'idle' && !this.running && !this.settling && this.queue.length === 0 && this.worker !== undefined;
  }

  /** What `describe` and `ls` show. */
  get publicStatus(): NodeStatus {
    return this.status === 'idle' || this.status === 'waking' ? 'idle' : 'active';
  }
}
