/**
 * @module keynode
 * The public API. Everything a program needs; nothing else is reachable (see package.json "exports").
 * @example
 * import { connect, Identity, Lifetime } from 'keynode';
 */
export { Client, connect, NodeHandle, type BudgetReport, type CallOptions, type DrainReport, type MoveResult, type ConnectOptions, type NodeLike, type SpawnOptions, type SandboxOptions, type AclEntry, type Ctx, type Ref, type Index, type NodeRefLike, type Placement } from './client/index.js';
export { Lifetime, type Call } from './lifetimes/index.js';
export {
  Identity, KeynodeError, isKeynodeError, parseNodeUrl, formatNodeUrl, isNodeId, NodeRef, ERROR_STATUS,
  type ErrorCode, type RemoteError, type LoadReport, type Load, type Room, type MemberView, type NodeId, type NodeInfo, type NodeStatus, type BudgetSpec, type LifetimeKind, type RefsMode,
} from './protocol/index.js';
