/**
 * @module lifetimes/schedule
 * Deadlines of Resetting and Leased nodes, kept in the store ordered by time, with one timer for the
 * earliest. A million nodes with deadlines are a million keys on disk and one timer; a restart re-arms from
 * the first key. Handlers must make their own effects and the deadline's removal one batch, so a crash
 * between them replays the deadline rather than losing it.
 *
 * Fairness: each deadline runs in its group's lane (the tenant the node lives under). A lane runs at most
 * PER_GROUP handlers at once; all lanes together CONCURRENCY, except that a lane with nothing running may
 * always start one, so tenants whose handlers are slow (a lease check that never answers) fill their own
 * lanes, never another's. A due deadline whose lane is full is moved, in the store, to when that lane is
 * sure to have room (the earliest bound of what it runs), and pulled forward from memory as soon as the lane
 * has room earlier: it neither blocks the head of the schedule nor holds memory beyond a small bound.
 */
import type { NodeId } from '../protocol/index.js';
import type { Store, Txn } from '../store/index.js';

export type DeadlineKind = 'reset' | 'lease';

export interface Deadline {
  at: number;
  id: NodeId;
  kind: DeadlineKind;
}

/** What a due deadline asks for, once its node's record has been read. */
export interface DeadlineWork {
  /** The lane it runs in: the tenant its node lives under. */
  group: string;
  /** How long `run` may take at most (from the node's own sandbox): the lane is sure to have room after it. */
  boundMs: number;
  run(): Promise<void>;
}

/** Reads what `deadline` needs; undefined when nothing is left to do (the handler removed the deadline). */
export type DeadlineHandler = (deadline: Deadline) => Promise<DeadlineWork | undefined>;

/** Handlers of one tenant at once: its own slow checks queue behind each other, not behind anyone else's. */
export const PER_GROUP = 4;
/** Handlers at once over all tenants (a tenant with none running may exceed it by one): a restart with thousands of overdue deadlines must not starve live traffic. */
const CONCURRENCY = 64;
/** Due deadlines read (and started or moved) per turn of the timer. */
const BATCH = 64;
/** Moved deadlines a lane remembers, to start them as soon as it has room; the rest wait for their time. */
const MAX_WAITING = 256;
/** A deadline moved because its lane is full comes back no sooner than this. */
const MIN_DEFER_MS = 100;
/** A deadline whose record could not be read is left alone this long (a failing store must not spin). */
const RETRY_MS = 1000;
// setTimeout's ceiling; a farther deadline just re-arms when this fires.
const MAX_DELAY = 2 ** 31 - 1;

interface Lane {
  /** When each handler it runs is sure to be done (start + its bound). */
  ends: number[];
  /** Handlers being read (pulled forward) for a place it has already promised. */
  pending: number;
  /** Deadlines it moved to a later time, by key, oldest first: started from here when it has room. */
  waiting: Map<string, Deadline>;
}

export class DeadlineSchedule {
  readonly #store: Store;
  readonly #handle: DeadlineHandler;
  readonly #onError: (e: unknown, d: Deadline) => void;
  #timer: NodeJS.Timeout | undefined;
  #armedAt = Infinity;
  #draining: Promise<void> | undefined;
  readonly #running = new Set<Promise<void>>();
  #rerun = false;
  #closed = false;
  /** Deadlines being read or handled now: a handler may take a while (a lease check), and must not run twice. */
  readonly #held = new Set<string>();
  readonly #lanes = new Map<string, Lane>();
  #runningTotal = 0;

  constructor(store: Store, handle: DeadlineHandler, onError: (e: unknown, d: Deadline) => void) {
    this.#store = store;
    this.#handle = handle;
    this.#onError = onError;
  }

  /** Adds a deadline to `txn`; call `notify(at)` once the txn is committed. */
  add(txn: Txn, at: number, id: NodeId, kind: DeadlineKind): void {
    txn.deadline(at, id, kind);
  }

  remove(txn: Txn, d: Deadline): void {
    txn.deadline(d.at, d.id, d.kind, false);
  }

  /** Re-arms the timer if `at` is earlier than what it waits for. */
  notify(at: number): void {
    if (!this.#closed && at < this.#armedAt) this.#arm(at);
  }

  async start(): Promise<void> {
    await this.#rearm();
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#armedAt = at;
    this.#timer = setTimeout(() => this.#fire(), Math.min(MAX_DELAY, Math.max(0, at - Date.now()))).unref();
  }

  #fire(): void {
    this.#armedAt = Infinity;
    if (this.#draining) {
      this.#rerun = true;
      return;
    }
    this.#draining = this.#drain().catch((e) => this.#onError(e, { at: 0, id: '', kind: 'reset' })).finally(() => {
      this.#draining = undefined;
      if (this.#rerun && !this.#closed) {
        this.#rerun = false;
        this.#fire();
      }
    });
  }

  /** One batch of due deadlines: each starts in its lane, or moves to when its lane has room. */
  async #drain(): Promise<void> {
    if (this.#closed) return;
    const due = ((await this.#store.dueDeadlines(Date.now(), this.#held.size + BATCH)) as Deadline[]).filter((d) => !this.#held.has(key(d))).slice(0, BATCH);
    for (const d of due) this.#held.add(key(d));
    const works = await Promise.all(due.map((d) => this.#prepare(d)));
    const txn = this.#store.txn();
    const moved: [Lane, Deadline][] = [];
    due.forEach((d, i) => {
      const work = works[i];
      if (work === null) return; // left held for RETRY_MS
      if (!work || this.#closed) return void this.#held.delete(key(d));
      const lane = this.#lane(work.group);
      lane.waiting.delete(key(d)); // its own time came first
      if (this.#mayStart(lane)) return this.#run(d, work, lane);
      this.#held.delete(key(d));
      const roomBy = lane.ends.length ? Math.min(...lane.ends) : 0;
      const later: Deadline = { at: Math.max(Date.now() + MIN_DEFER_MS, roomBy), id: d.id, kind: d.kind };
      this.remove(txn, d);
      this.add(txn, later.at, later.id, later.kind);
      moved.push([lane, later]);
    });
    if (moved.length) {
      await txn.commit();
      for (const [lane, later] of moved) {
        if (lane.waiting.size < MAX_WAITING) lane.waiting.set(key(later), later);
        this.notify(later.at);
      }
    }
    await this.#rearm();
  }

  /** The handler's reading of `d`; null when that failed (it is retried later, not at once). */
  async #prepare(d: Deadline): Promise<DeadlineWork | undefined | null> {
    try {
      return await this.#handle(d);
    } catch (e) {
      this.#onError(e, d);
      setTimeout(() => {
        this.#held.delete(key(d));
        void this.#rearm().catch((err) => this.#onError(err, d));
      }, RETRY_MS).unref();
      return null;
    }
  }

  #lane(group: string): Lane {
    let lane = this.#lanes.get(group);
    if (!lane) {
      lane = { ends: [], pending: 0, waiting: new Map() };
      this.#lanes.set(group, lane);
    }
    return lane;
  }

  #mayStart(lane: Lane): boolean {
    const busy = lane.ends.length + lane.pending;
    return busy === 0 || (busy < PER_GROUP && this.#runningTotal < CONCURRENCY);
  }

  #run(d: Deadline, work: DeadlineWork, lane: Lane): void {
    const k = key(d);
    const end = Date.now() + work.boundMs;
    lane.ends.push(end);
    this.#runningTotal++;
    const run = Promise.resolve()
      .then(() => work.run())
      .catch((e) => this.#onError(e, d))
      .finally(() => {
        lane.ends.splice(lane.ends.indexOf(end), 1);
        this.#runningTotal--;
        this.#held.delete(k);
        this.#running.delete(run);
        if (this.#closed) return;
        this.#pull(work.group, lane);
        void this.#rearm().catch((e) => this.#onError(e, d));
      });
    this.#running.add(run);
  }

  /** The lane has room: its moved deadlines start now rather than at the time they were moved to. */
  #pull(group: string, lane: Lane): void {
    for (const [k, d] of lane.waiting) {
      if (this.#closed || !this.#mayStart(lane)) break;
      lane.waiting.delete(k);
      if (this.#held.has(k)) continue;
      this.#held.add(k);
      lane.pending++;
      void this.#prepare(d).then((work) => {
        lane.pending--;
        if (work === null) return;
        if (work && !this.#closed && this.#mayStart(lane)) return this.#run(d, work, lane);
        this.#held.delete(k);
        if (work && !this.#closed) lane.waiting.set(k, d); // still at its moved time in the store
        if (!this.#closed) this.#pull(group, lane);
      });
    }
    if (!lane.ends.length && !lane.pending && !lane.waiting.size && this.#lanes.get(group) === lane) this.#lanes.delete(group);
  }

  /**
   * Arms for the earliest deadline not being handled now. (Skipping those matters: re-arming for one that a
   * handler still holds would spin; and a timer may fire a millisecond early, so "due" is not "in the past".)
   */
  async #rearm(): Promise<void> {
    if (this.#closed) return;
    const pending = await this.#store.dueDeadlines(Number.MAX_SAFE_INTEGER - 1, this.#held.size + 1);
    const next = (pending as Deadline[]).find((d) => !this.#held.has(key(d)));
    if (next) this.notify(next.at);
  }

  /** Stops arming; resolves when the handlers still running have finished (the store stays open till then). */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#draining;
    await Promise.allSettled([...this.#running]);
  }
}

function key(d: Deadline): string {
  return `${d.at}:${d.id}:${d.kind}`;
}
