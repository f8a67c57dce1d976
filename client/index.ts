/**
 * @module client
 * The spawn / at / here library for programs.
 */
export { Client, connect, type BudgetReport, type CallOptions, type ConnectOptions, type NodeLike } from './client.js';
export type { DrainReport, MoveResult } from '../protocol/index.js';
export { NodeHandle } from './handle.js';
export type { SpawnOptions, SandboxOptions, AclEntry } from './options.js';
export type { Placement } from './placement.js';
export type { Ctx, Ref, Index, NodeRefLike } from './ctx.js';
