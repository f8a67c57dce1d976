/**
 * @module container/policies/storage
 * The storage dimension of a Budget. A node's refs and index entries (keys, names and values, as LevelDB
 * stores them, and the size entry kept beside each) and its log lines count, in bytes, against its own
 * `storageMB` and every holder's above it.
 * A commit is charged what it changes: a new entry its size, an overwrite the difference, a delete gives its
 * bytes back. The counters change in the commit's own batch (store/meter), so they are exact after any crash,
 * and a commit that would pass a ceiling is refused whole, before anything of it is written.
 */
import type { Write } from '../../protocol/index.js';
import { indexKey, refKey, sizeKey, stateEntryBytes, type NodeRecord, type Store, type Txn } from '../../store/index.js';
import type { Budgets } from './budgets.js';

/**
 * For each entry one eval's writes touch (by its size key): what it will be charged, 0 for a delete. The last
 * write to a key is the one that stays (a worker may send one key twice: it is hostile input).
 */
function nextSizes(id: string, writes: readonly Write[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const w of writes) {
    if (w.op === 'ref') {
      const key = refKey(id, w.name);
      out.set(sizeKey('r', key), stateEntryBytes(key, w.value.length));
    } else {
      const key = indexKey(id, w.name, w.key);
      out.set(sizeKey('i', key), w.op === 'put' ? stateEntryBytes(key, w.value.length) : 0);
    }
  }
  return out;
}

/** Bytes one eval hands the store: every key it writes or deletes (names included), every value, their sizes. */
export function writtenBytes(id: string, writes: readonly Write[]): number {
  let total = 0;
  for (const w of writes) {
    if (w.op === 'ref') total += stateEntryBytes(refKey(id, w.name), w.value.length);
    else total += stateEntryBytes(indexKey(id, w.name, w.key), w.op === 'put' ? w.value.length : 0);
  }
  return total;
}

export class StorageQuota {
  readonly #store: Store;
  readonly #budgets: Budgets;
  /** Called when a commit or a batch of log lines is refused for want of storage (metrics). */
  onRefused: (what: 'commit' | 'log') => void = () => {};

  constructor(store: Store, budgets: Budgets) {
    this.#store = store;
    this.#budgets = budgets;
  }

  /**
   * Adds to `txn` what the node's writes change in its counters: each entry's new size less what it was
   * charged before (its size entry, 4 bytes, never its value), read and checked when the batch is written
   * (store/meter). A destroy that gets there first fails this commit.
   */
  async charge(rec: NodeRecord, writes: readonly Write[], txn: Txn): Promise<void> {
    txn.charge(await this.#budgets.storageAccount(rec), 0, nextSizes(rec.id, writes));
  }

  /** Counters `ids` stand at: what each holder's subtree stores, in bytes. */
  use(ids: string[]): Promise<number[]> {
    return this.#store.counters(ids);
  }
}
