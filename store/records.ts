/**
 * @module store/records
 * What the container keeps per node. Pure data, MessagePack-encoded on disk.
 */
import { Encoder } from '@msgpack/msgpack';
import type { AclEntry, BudgetSpec, LifetimeSpec, NodeId, SandboxSpec } from '../protocol/index.js';

export interface NodeRecord {
  id: NodeId;
  /** The spawner: a node or a client principal. */
  parent: NodeId;
  /** Every ancestor, top principal first, parent last. The ACL check and cascades walk this. */
  ancestors: NodeId[];
  lifetime: LifetimeSpec;
  sandbox: SandboxSpec;
  acl: AclEntry[];
  budget: BudgetSpec;
  createdAt: number;
  /** The node's seed sealed with the container master key. Absent for Ephemeral nodes. */
  sealedKey?: Uint8Array;
  /** Ephemeral nodes: the container boot whose memory holds their key. */
  boot?: number;
}

export interface Tombstone {
  destroyedAt: number;
  reason: string;
}

/** A node that moved to another container: where it lives now, and which move sent it there. */
export interface Forward {
  /** The node's URL on the container it moved to. */
  url: string;
  /** That container's ID. */
  container: string;
  /** The move's ID (the target activates only the move whose forwarding record the source committed). */
  move: string;
  at: number;
  /** The node's ancestors when it left: who may finish its move (with the operator). */
  ancestors: string[];
}

export interface LogLine {
  seq: number;
  ts: number;
  line: string;
}

// Node records are plain data the container built itself: they need none of the protocol codec's checks
// for node references and reshaped values, which double the cost of encoding one (spawns write thousands).
const encoder = new Encoder({ ignoreUndefined: true });

export function encodeRecord(rec: NodeRecord): Uint8Array {
  return encoder.encode(rec);
}

const ID_BYTES = 52;
const SEALED_BYTES = 60;
// Neither can occur in a real record: '0' is not in the node-ID alphabet, and the bytes are checked to occur once.
const ID_MARK = '0'.repeat(ID_BYTES);
const SEALED_MARK = new Uint8Array(SEALED_BYTES).fill(0xa5);

function findOnce(bytes: Uint8Array, what: Uint8Array): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = b.indexOf(what);
  return at >= 0 && b.indexOf(what, at + 1) < 0 ? at + 2 : -1; // past the str8/bin8 header
}

/**
 * The encoding of many records that differ only in `id` and `sealedKey` (a batch of siblings with the same
 * policies): encoded once with placeholders, then each one is a copy with two fields overwritten. Byte for
 * byte what `encodeRecord` gives, at a tenth of its cost.
 */
export class RecordTemplate {
  readonly #bytes: Uint8Array;
  readonly #idAt: number;
  readonly #sealedAt: number;

  private constructor(bytes: Uint8Array, idAt: number, sealedAt: number) {
    this.#bytes = bytes;
    this.#idAt = idAt;
    this.#sealedAt = sealedAt;
  }

  /** `rec` with any id; undefined when the placeholders cannot be placed unambiguously. */
  static of(rec: NodeRecord): RecordTemplate | undefined {
    const sealed = rec.sealedKey !== undefined;
    if (sealed && rec.sealedKey!.length !== SEALED_BYTES) return undefined;
    const bytes = encoder.encode({ ...rec, id: ID_MARK, ...(sealed ? { sealedKey: SEALED_MARK } : {}) });
    const idAt = findOnce(bytes, Uint8Array.of(0xd9, ID_BYTES, ...Buffer.from(ID_MARK, 'latin1')));
    const sealedAt = sealed ? findOnce(bytes, Uint8Array.of(0xc4, SEALED_BYTES, ...SEALED_MARK)) : 0;
    if (idAt < 0 || sealedAt < 0) return undefined;
    return new RecordTemplate(bytes, idAt, sealed ? sealedAt : -1);
  }

  /** `sealedKey` is required exactly when the template record had one. */
  encode(id: NodeId, sealedKey?: Uint8Array): Uint8Array {
    return this.#fill(new Uint8Array(this.#bytes.length), id, sealedKey);
  }

  /**
   * Every record's bytes, as views of one allocation. A buffer per record would be thousands of small
   * allocations per spawn that live until V8 collects them (after the batch is written), interleaved in the
   * allocator with longer-lived ones: the process's heap would keep their high-water mark for good.
   */
  encodeAll(records: readonly { id: NodeId; sealedKey?: Uint8Array }[]): Uint8Array[] {
    const size = this.#bytes.length;
    const all = new Uint8Array(size * records.length);
    return records.map((r, i) => this.#fill(all.subarray(size * i, size * (i + 1)), r.id, r.sealedKey));
  }

  #fill(out: Uint8Array, id: NodeId, sealedKey?: Uint8Array): Uint8Array {
    if (id.length !== ID_BYTES || (this.#sealedAt >= 0) !== (sealedKey?.length === SEALED_BYTES)) throw new TypeError('a record template fills in a 52-character ID and, when it has one, a 60-byte sealed key');
    out.set(this.#bytes);
    for (let i = 0; i < ID_BYTES; i++) out[this.#idAt + i] = id.charCodeAt(i);
    if (this.#sealedAt >= 0) out.set(sealedKey!, this.#sealedAt);
    return out;
  }
}
