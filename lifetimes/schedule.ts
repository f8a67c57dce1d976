/**
 * @module lifetimes/schedule
 * Deadlines of Resetting and Leased nodes, kept in the store ordered by time, with one timer for the
 * earliest. A million nodes with deadlines are a million keys on disk and one timer; a restart re-arms from
 * the first key. Handlers must make their own effects and the deadline's removal one batch, so a crash
 * between them replays the deadline rather than losing it.
 */
import type { NodeId } from '../protocol/index.js';
import type { Store, Txn } from '../store/index.js';

export type DeadlineKind = 'reset' | 'lease';

export interface Deadline {
  at: number;
  id: NodeId;
  kind: DeadlineKind;
}

export type DeadlineHandler = (deadline: Deadline) => Promise<void>;

/** Handlers running at once: a restart with thousands of overdue deadlines must not starve live traffic. */
const CONCURRENCY = 16;
// setTimeout's ceiling; a farther deadline just re-arms when this fires.
const MAX_DELAY = 2 ** 31 - 1;

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
  /** Deadlines being handled now: a handler may take a while (a lease check), and must not run twice. */
  readonly #inFlight = new Set<string>();

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

  async #drain(): Promise<void> {
    if (this.#closed) return;
    const room = CONCURRENCY - this.#inFlight.size;
    if (room <= 0) return; // a finishing handler re-arms
    const due = ((await this.#store.dueDeadlines(Date.now(), room + this.#inFlight.size)) as Deadline[]).filter((d) => !this.#inFlight.has(key(d)));
    for (const d of due.slice(0, room)) {
      const k = key(d);
      this.#inFlight.add(k);
      // Handlers run concurrently (up to CONCURRENCY): one slow lease check must not hold up the rest.
      const run = this.#handle(d)
        .catch((e) => this.#onError(e, d))
        .finally(() => {
          this.#inFlight.delete(k);
          this.#running.delete(run);
          if (!this.#closed) void this.#rearm().catch((e) => this.#onError(e, d));
        });
      this.#running.add(run);
    }
    await this.#rearm();
  }

  /**
   * Arms for the earliest deadline not being handled now. (Skipping those matters: re-arming for one that a
   * handler still holds would spin; and a timer may fire a millisecond early, so "due" is not "in the past".)
   */
  async #rearm(): Promise<void> {
    if (this.#closed) return;
    if (this.#inFlight.size >= CONCURRENCY) return; // the next handler to finish re-arms
    const pending = await this.#store.dueDeadlines(Number.MAX_SAFE_INTEGER - 1, this.#inFlight.size + 1);
    const next = (pending as Deadline[]).find((d) => !this.#inFlight.has(key(d)));
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
