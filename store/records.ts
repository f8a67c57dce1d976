/**
 * @module store/records
 * What the container keeps per node. Pure data, MessagePack-encoded on disk.
 */
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

export interface LogLine {
  seq: number;
  ts: number;
  line: string;
}
