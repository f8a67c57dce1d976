/**
 * @module store/meter
 * Byte counters kept exact across crashes: a transaction that changes counters is written in the same
 * LevelDB batch as their new values. Counters are shared (every node's commit counts against its tenant and
 * the operator), and LevelDB applies concurrent batches in no promised order, so every batch that touches
 * counters goes through one writer: it takes the transactions waiting, reads in one go the counters they
 * name, the sizes of the entries they rewrite and the keys they require, checks each transaction in arrival
 * order against the values the earlier ones left (refusing one that would pass a ceiling, or whose required
 * key is gone, and only that one), and writes the rest in one batch. So a commit costs two trips to LevelDB
 * however many wait, and no tenant's commits queue behind another's one by one.
 */
import { KeynodeError } from '../protocol/index.js';

/** A counter a transaction adds to, with the ceiling a positive change may not pass (bytes; Infinity for none). */
export interface Charge {
  key: string;
  max: number;
}

/** The counters one node's bytes count against, and the node (its writes apply only while it exists). */
export interface StorageAccount {
  id: string;
  parent: string;
  counters: Charge[];
}

export type Metering =
  /**
   * Adds to every counter `delta`, plus for each entry of `resized` (a size key and the size it will have, 0 when
   * removed) the difference from the size it has now. A change that takes a counter past its ceiling, when
   * positive, refuses the transaction.
   */
  | { kind: 'count'; counters: Charge[]; delta: number; resized?: Map<string, number> }
  /** Subtracts counter `key`'s current value from each counter of `from`, then deletes the counters `remove`. */
  | { kind: 'uncount'; key: string; from: string[]; remove: string[] };

/** The transaction applies only while `sub/key` exists (checked against the batches before it). */
export interface Requirement {
  sub: string;
  key: string;
  error: () => Error;
}

export interface MeteredOp {
  sub: string;
  key: string;
  type: 'put' | 'del';
  value?: Uint8Array;
}

export interface Metered {
  ops: MeteredOp[];
  meters: Metering[];
  requires: Requirement[];
}

export interface MeterIO<T extends Metered> {
  counters(keys: string[]): Promise<number[]>;
  /** Current sizes of size keys (0 for one absent). */
  sizes(keys: string[]): Promise<number[]>;
  exists(sub: string, keys: string[]): Promise<boolean[]>;
  /** Writes the transactions' own operations plus the counters' new values (undefined deletes one). */
  write(txns: T[], counters: Map<string, number | undefined>): Promise<void>;
}

/**
 * What one round takes at most (the first transaction always goes): a commit waits for the round being written
 * and then its own, so a tenant's huge batches hold up others' commits by one batch, not by many.
 */
const MAX_ROUND_OPS = 64 * 1024;
const MAX_ROUND_BYTES = 8 * 1024 * 1024;

function weight(txn: Metered): number {
  let bytes = 0;
  for (const op of txn.ops) bytes += op.key.length + (op.value?.length ?? 0);
  return bytes;
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(3)} MiB`;
}

interface Pending<T> {
  txn: T;
  resolve(): void;
  reject(e: unknown): void;
}

/** What a round read, updated as it accepts transactions (later ones see what earlier ones will write). */
interface RoundState {
  counters: Map<string, number>;
  sizes: Map<string, number>;
  present: Map<string, boolean>;
}

export class Meter<T extends Metered> {
  readonly #io: MeterIO<T>;
  readonly #waiting: Pending<T>[] = [];
  #running = false;

  constructor(io: MeterIO<T>) {
    this.#io = io;
  }

  commit(txn: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ txn, resolve, reject });
      if (!this.#running) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#waiting.length) {
        let ops = 0;
        let bytes = 0;
        let n = 0;
        while (n < this.#waiting.length) {
          const txn = this.#waiting[n]!.txn;
          const w = weight(txn);
          if (n > 0 && (ops + txn.ops.length > MAX_ROUND_OPS || bytes + w > MAX_ROUND_BYTES)) break;
          ops += txn.ops.length;
          bytes += w;
          n++;
        }
        const round = this.#waiting.splice(0, n);
        try {
          await this.#round(round);
        } catch (e) {
          for (const p of round) p.reject(e);
        }
      }
    } finally {
      this.#running = false;
    }
  }

  async #read(round: Pending<T>[]): Promise<RoundState> {
    const counters = new Set<string>();
    const sizes = new Set<string>();
    const required = new Map<string, Set<string>>();
    for (const { txn } of round) {
      for (const m of txn.meters) {
        if (m.kind === 'count') {
          for (const c of m.counters) counters.add(c.key);
          for (const k of m.resized?.keys() ?? []) sizes.add(k);
        } else {
          for (const k of [m.key, ...m.from, ...m.remove]) counters.add(k);
        }
      }
      for (const r of txn.requires) {
        let set = required.get(r.sub);
        if (!set) required.set(r.sub, (set = new Set()));
        set.add(r.key);
      }
    }
    const counterList = [...counters];
    const sizeList = [...sizes];
    const [values, sizeValues, existing] = await Promise.all([
      this.#io.counters(counterList),
      this.#io.sizes(sizeList),
      Promise.all([...required].map(async ([sub, set]) => {
        const list = [...set];
        const found = await this.#io.exists(sub, list);
        return list.map((k, i) => [`${sub}\u0000${k}`, found[i]!] as const);
      })),
    ]);
    return {
      counters: new Map(counterList.map((k, i) => [k, values[i]!])),
      sizes: new Map(sizeList.map((k, i) => [k, sizeValues[i]!])),
      present: new Map(existing.flat()),
    };
  }

  async #round(round: Pending<T>[]): Promise<void> {
    const state = await this.#read(round);
    const changed = new Map<string, number | undefined>();
    const accepted: Pending<T>[] = [];
    for (const p of round) {
      const deltas = p.txn.meters.map((m) => (m.kind === 'count' ? this.#delta(m, state.sizes) : 0));
      const refusal = this.#check(p.txn, deltas, state);
      if (refusal) {
        p.reject(refusal);
        continue;
      }
      // Applied only once the whole transaction fits: a refused one leaves everything as it was.
      const set = (key: string, v: number) => {
        state.counters.set(key, v);
        changed.set(key, v || undefined); // a counter at zero is no key at all
      };
      for (const [i, m] of p.txn.meters.entries()) {
        if (m.kind === 'count') {
          for (const c of m.counters) set(c.key, Math.max(0, state.counters.get(c.key)! + deltas[i]!));
          for (const [k, size] of m.resized ?? []) state.sizes.set(k, size);
        } else {
          const gone = state.counters.get(m.key)!;
          for (const k of m.from) set(k, Math.max(0, state.counters.get(k)! - gone));
          for (const k of m.remove) set(k, 0);
        }
      }
      if (state.present.size) {
        for (const op of p.txn.ops) {
          const id = `${op.sub}\u0000${op.key}`;
          if (state.present.has(id)) state.present.set(id, op.type === 'put');
        }
      }
      accepted.push(p);
    }
    if (!accepted.length) return;
    try {
      await this.#io.write(accepted.map((p) => p.txn), changed);
    } catch (e) {
      for (const p of accepted) p.reject(e);
      return;
    }
    for (const p of accepted) p.resolve();
  }

  #delta(m: Extract<Metering, { kind: 'count' }>, sizes: Map<string, number>): number {
    let d = m.delta;
    for (const [k, size] of m.resized ?? []) d += size - sizes.get(k)!;
    return d;
  }

  #check(txn: T, deltas: number[], state: RoundState): Error | undefined {
    for (const r of txn.requires) if (!state.present.get(`${r.sub}\u0000${r.key}`)) return r.error();
    // Several charges of one transaction on one counter add up before the ceiling is checked.
    const after = new Map<string, number>();
    for (const [i, m] of txn.meters.entries()) {
      if (m.kind !== 'count') continue;
      const d = deltas[i]!;
      for (const c of m.counters) {
        const v = (after.get(c.key) ?? state.counters.get(c.key)!) + d;
        after.set(c.key, v);
        if (d > 0 && v > c.max) {
          const used = state.counters.get(c.key)!;
          return new KeynodeError(
            'ERR_BUDGET_EXHAUSTED',
            `the storage budget of ${c.key} is full: it holds ${used} bytes (${mib(used)}) of ${c.max} (${mib(c.max)}), and this write adds ${d} more; delete data, or ask for a larger budget.storageMB`,
          );
        }
      }
    }
    return undefined;
  }
}
