/**
 * @module container/logbook
 * Per-node logs from `ctx.log`. Lines are buffered and written in batches (logs are kept even when the eval
 * fails: that is when they matter), trimmed to the last `keep` lines, and followed by long-polling readers.
 * Sequence numbers are microseconds since the epoch, made strictly increasing per node, so they need no
 * read from the store before the first append after a wake. Stored lines count against the node's storage
 * budget like its state: lines that do not fit are dropped.
 */
import type { KeynodeError, NodeId } from '../protocol/index.js';
import type { LogLine, StorageAccount, Store } from '../store/index.js';

const FLUSH_MS = 20;

export class LogBook {
  readonly #store: Store;
  readonly #keep: number;
  readonly #pending = new Map<NodeId, LogLine[]>();
  readonly #lastSeq = new Map<NodeId, number>();
  readonly #followers = new Map<NodeId, Set<() => void>>();
  /** Lines written per node since its last trim: a chatty node that never sleeps is trimmed as it goes. */
  readonly #sinceTrim = new Map<NodeId, number>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  /** The storage account a node's lines count against; undefined once the node is gone (set by the container). */
  account: (id: NodeId) => Promise<StorageAccount | undefined> = async () => undefined;
  /** Lines were dropped for want of storage. */
  onRefused: () => void = () => {};

  constructor(store: Store, keep: number) {
    this.#store = store;
    this.#keep = keep;
  }

  append(id: NodeId, line: string): void {
    const now = Date.now();
    const seq = Math.max(now * 1000, (this.#lastSeq.get(id) ?? 0) + 1);
    this.#lastSeq.set(id, seq);
    let list = this.#pending.get(id);
    if (!list) this.#pending.set(id, (list = []));
    list.push({ seq, ts: now, line });
    // Runaway logging is bounded in memory too: only the last `keep` unflushed lines matter.
    if (list.length > this.#keep) list.splice(0, list.length - this.#keep);
    this.#timer ??= setTimeout(() => void this.flush(), FLUSH_MS);
  }

  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = [...this.#pending];
    this.#pending.clear();
    this.#flushing = this.#flushing.then(async () => {
      await Promise.all(
        batch.map(async ([id, lines]) => {
          const account = await this.account(id);
          if (!account) return;
          try {
            await this.#store.appendLogs(lines, this.#keep, account);
          } catch (e) {
            const code = (e as KeynodeError).code;
            if (code === 'ERR_BUDGET_EXHAUSTED') return this.onRefused();
            if (code === 'ERR_NODE_DESTROYED') return;
            throw e;
          }
          const written = (this.#sinceTrim.get(id) ?? this.#keep) + Math.min(lines.length, this.#keep);
          if (written <= this.#keep) return void this.#sinceTrim.set(id, written);
          // Now exactly `keep` are stored, so the next line written triggers the next trim.
          this.#sinceTrim.set(id, this.#keep);
          await this.#trim(account);
        }),
      );
      for (const [id] of batch) for (const wake of this.#followers.get(id) ?? []) wake();
    });
    return this.#flushing;
  }

  async read(id: NodeId, after: number, limit: number): Promise<LogLine[]> {
    await this.flush();
    return this.#store.readLogs(id, after, limit);
  }

  /** Resolves when new lines for the node are stored, or after `waitMs`. */
  waitForLines(id: NodeId, waitMs: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#followers.get(id);
      if (!set) this.#followers.set(id, (set = new Set()));
      const done = (): void => {
        clearTimeout(timer);
        set!.delete(done);
        if (set!.size === 0) this.#followers.delete(id);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      set.add(done);
    });
  }

  /** The node went to sleep: trim its log and forget its counter. */
  async settle(id: NodeId): Promise<void> {
    // Nothing logged since it woke: nothing to trim (an eval's lines always pass through append).
    if (!this.#lastSeq.has(id)) return;
    await this.flush();
    this.#lastSeq.delete(id);
    this.#sinceTrim.delete(id);
    const account = await this.account(id);
    if (account) await this.#trim(account);
  }

  async #trim(account: StorageAccount): Promise<void> {
    try {
      await this.#store.trimLogs(this.#keep, account);
    } catch (e) {
      // Destroyed meanwhile: its destroy took back every byte it held, lines included.
      if ((e as KeynodeError).code !== 'ERR_NODE_DESTROYED') throw e;
    }
  }

  /** The node was destroyed: its unwritten lines are dropped and nothing of it stays in memory. */
  async forget(id: NodeId): Promise<void> {
    this.#pending.delete(id);
    await this.#flushing; // a batch already taken may still write this node's lines: let it finish first
    this.#lastSeq.delete(id);
    this.#sinceTrim.delete(id);
    for (const wake of [...(this.#followers.get(id) ?? [])]) wake();
  }

  /** Wakes every follower (shutdown). */
  close(): Promise<void> {
    for (const set of this.#followers.values()) for (const wake of [...set]) wake();
    return this.flush();
  }
}
