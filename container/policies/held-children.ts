/**
 * @module container/held-children
 * Which Ephemeral children a node holds through its state, kept as an index (`h`: parent + child + state
 * key) that each commit updates for the keys it writes. A parent's sleep or crash then costs one seek per
 * child, not a search of its whole state on the event loop: the work is proportional to what a commit writes
 * (already bounded per eval) and is paid by the node that writes.
 */
import type { NodeId, Write } from '../../protocol/index.js';
import { indexKey, refKey, type Store, type Txn } from '../../store/index.js';

const ID_LENGTH = 52;
/** Characters of an ID that key the first-pass filter: 6 base32 digits are 30 bits, exact in a small integer. */
const PREFIX = 6;
const PREFIX_MASK = (1 << (5 * PREFIX)) - 1;
const DIGIT = new Int8Array(256).fill(-1);
for (const [i, c] of [...'abcdefghijklmnopqrstuvwxyz234567'].entries()) DIGIT[c.charCodeAt(0)] = i;
const EMPTY = new Uint8Array(0);

/** The IDs of `kids` (with their prefixes in `prefixes`) that occur in `bytes`, read as ASCII. */
export function idsIn(bytes: Uint8Array, kids: ReadonlySet<string>, prefixes: ReadonlySet<number>, out = new Set<string>()): Set<string> {
  let run = 0; // base32 digits in a row ending at i
  let rolling = 0; // the last PREFIX of them as a number
  for (let i = 0; i < bytes.length; i++) {
    const d = DIGIT[bytes[i]!]!;
    if (d < 0) {
      run = 0;
      continue;
    }
    rolling = ((rolling << 5) | d) & PREFIX_MASK;
    if (++run < PREFIX) continue;
    const start = i - PREFIX + 1;
    // Cheap integer test first; only a prefix some child has costs a string, and only if a whole ID fits.
    if (!prefixes.has(rolling) || start + ID_LENGTH > bytes.length) continue;
    const id = Buffer.from(bytes.buffer, bytes.byteOffset + start, ID_LENGTH).toString('latin1');
    if (kids.has(id)) out.add(id);
  }
  return out;
}

function prefixOf(id: string): number {
  let v = 0;
  for (let i = 0; i < PREFIX; i++) v = (v << 5) | DIGIT[id.charCodeAt(i)]!;
  return v;
}

const utf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8');

export class HeldChildren {
  readonly #store: Store;
  /** Node-held Ephemeral children per parent. All belong to this boot (their keys live only in memory). */
  readonly #kids = new Map<NodeId, { ids: Set<NodeId>; prefixes: Map<number, number> }>();
  /** Parents whose children are being collected, and whether another collection was asked for meanwhile. */
  readonly #collecting = new Map<NodeId, boolean>();

  constructor(store: Store) {
    this.#store = store;
  }

  has(parent: NodeId): boolean {
    return this.#kids.has(parent);
  }

  add(parent: NodeId, kid: NodeId): void {
    let k = this.#kids.get(parent);
    if (!k) this.#kids.set(parent, (k = { ids: new Set(), prefixes: new Map() }));
    if (k.ids.has(kid)) return;
    k.ids.add(kid);
    const p = prefixOf(kid);
    k.prefixes.set(p, (k.prefixes.get(p) ?? 0) + 1);
  }

  /** A child ended: it is no longer one to look for, and its parent's index entries for it go. */
  async remove(parent: NodeId, kid: NodeId): Promise<void> {
    const k = this.#kids.get(parent);
    if (k?.ids.delete(kid)) {
      const p = prefixOf(kid);
      const n = k.prefixes.get(p)!;
      if (n <= 1) k.prefixes.delete(p);
      else k.prefixes.set(p, n - 1);
      if (!k.ids.size) this.#kids.delete(parent);
    }
    await this.#store.clearHolds(`${parent}${kid}`);
  }

  /** A node ended: nothing to look for under it any more. */
  forget(parent: NodeId): void {
    this.#kids.delete(parent);
  }

  /**
   * Adds to `txn` the index changes `writes` make: for each state key written, the children its old bytes
   * held and its new ones hold (its name and index key count: an ID kept as a key is kept). Reads the old
   * value of each key written, so only parents with node-held children pay anything.
   */
  async index(parent: NodeId, writes: readonly Write[], txn: Txn): Promise<void> {
    const k = this.#kids.get(parent);
    if (!k || !writes.length) return;
    const prefixes = new Set(k.prefixes.keys());
    const before = new Map<string, Set<string>>();
    const after = new Map<string, Set<string>>();
    for (const w of writes) {
      const key = w.op === 'ref' ? `r${refKey(parent, w.name)}` : `i${indexKey(parent, w.name, w.key)}`;
      if (!before.has(key)) {
        const old = w.op === 'ref' ? await this.#store.getRef(parent, w.name) : await this.#store.getIndex(parent, w.name, w.key);
        before.set(key, old ? this.#held(w, old, k.ids, prefixes) : new Set());
      }
      after.set(key, w.op === 'del' ? new Set() : this.#held(w, w.value, k.ids, prefixes));
    }
    const at = parent.length;
    for (const [key, now] of after) {
      const was = before.get(key)!;
      const rest = key.slice(1 + at); // the state key without its node ID: the ID is in the entry's prefix
      for (const kid of was) if (!now.has(kid)) txn.del('h', `${parent}${kid}${key[0]}${rest}`);
      for (const kid of now) if (!was.has(kid)) txn.put('h', `${parent}${kid}${key[0]}${rest}`, EMPTY);
    }
  }

  #held(w: Write, value: Uint8Array, kids: ReadonlySet<string>, prefixes: ReadonlySet<number>): Set<string> {
    const out = idsIn(value, kids, prefixes);
    idsIn(utf8(w.op === 'ref' ? w.name : `${w.name}\u0000${w.key}`), kids, prefixes, out);
    return out;
  }

  /**
   * Calls `drop` for each child of `parent` its state no longer holds: one index seek per child. A call while
   * one runs for the same parent runs once more after it, so a sleep right after a crash is not lost.
   */
  async collect(parent: NodeId, drop: (kid: NodeId) => Promise<void>): Promise<void> {
    if (!this.#kids.has(parent)) return;
    if (this.#collecting.has(parent)) return void this.#collecting.set(parent, true);
    this.#collecting.set(parent, false);
    try {
      do {
        this.#collecting.set(parent, false);
        for (const kid of [...(this.#kids.get(parent)?.ids ?? [])]) {
          if (!(await this.#store.holds(parent, kid))) await drop(kid);
        }
      } while (this.#collecting.get(parent));
    } finally {
      this.#collecting.delete(parent);
    }
  }
}
