/**
 * @module store/absent
 * Node IDs the store holds neither a record nor a tombstone for, remembered: a `ctx.at` to a node on another
 * container asks "does this node live here?" on every call, and would read LevelDB twice for the same no each
 * time. Bounded (oldest forgotten first), so IDs a node makes up cost memory only up to the bound.
 *
 * Safe under concurrent writes: every batch that writes a record or tombstone forgets its IDs and moves the
 * epoch, before it is written and again once it has landed, and an absence is remembered only when no such
 * batch began or landed while it was being read.
 */
export class AbsentIds {
  readonly #ids = new Set<string>();
  readonly #max: number;
  #epoch = 0;

  constructor(max: number) {
    this.#max = max;
  }

  has(id: string): boolean {
    return this.#ids.has(id);
  }

  /** Read before the store is; passed back to `add`. */
  get epoch(): number {
    return this.#epoch;
  }

  /** `id` was read absent by a read that began at `epoch`. */
  add(id: string, epoch: number): void {
    if (epoch !== this.#epoch) return;
    if (this.#ids.size >= this.#max) this.#ids.delete(this.#ids.values().next().value!);
    this.#ids.add(id);
  }

  /** A batch writing records or tombstones of `ids` is about to be written, or has landed. */
  written(ids: readonly string[]): void {
    this.#epoch++;
    for (const id of ids) this.#ids.delete(id);
  }
}
