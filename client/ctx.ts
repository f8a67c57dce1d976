/**
 * @module client/ctx
 * Types of what a function sees inside a node. They describe the runtime's `ctx`; nothing here runs.
 */
import type { SandboxOptions } from './options.js';

/** A reference to a node, as `ctx.here`, a spawned child, or a node reference in arguments and results. */
export interface NodeRefLike {
  readonly id: string;
  readonly url: string;
}

/** A single persistent value. */
export interface Ref<T = unknown> {
  get(): Promise<T | undefined>;
  set(value: T): Promise<void>;
}

/** A persistent key-value map, read in key order. */
export interface Index<T = unknown> {
  get(key: string): Promise<T | undefined>;
  put(key: string, value: T): Promise<void>;
  delete(key: string): Promise<void>;
  entries(options?: { prefix?: string; limit?: number }): Promise<[string, T][]>;
}

export interface Ctx {
  /** This node. */
  readonly here: NodeRefLike;
  /** The ID of the principal that sent this eval. */
  readonly caller: string;
  ref<T = unknown>(name: string): Ref<T>;
  index<T = unknown>(name: string): Index<T>;
  /** A log line, kept when sandbox.log is true. */
  log(...args: unknown[]): void;
  /** Runs fn on another node (same container or another) as this node. */
  at<A extends unknown[], R>(node: string | NodeRefLike, fn: (ctx: Ctx, ...args: A) => R, ...args: A): Promise<Awaited<R>>;
  /** Capabilities bound by the spawner. */
  readonly caps: Readonly<Record<string, (...args: any[]) => Promise<any>>>;
  /** Spawns a child of this node (sandbox.spawn must allow its lifetime); options as in client.spawn. */
  spawn(options: {
    lifetime: ReturnType<Ctx['Lifetime'][keyof Ctx['Lifetime']]>;
    sandbox?: Omit<SandboxOptions, 'capabilities'> & {
      capabilities?: Record<string, { node: string | NodeRefLike; fn: ((ctx: Ctx, ...args: never[]) => unknown) | string; args?: readonly unknown[] }>;
    };
    acl?: (string | NodeRefLike)[];
    budget?: { maxNodes?: number; maxAwake?: number; memoryMB?: number; storageMB?: number };
    /**
     * Next to the parent unless asked otherwise: 'load', `{ near }` a node here or `{ on }` this container
     * mean here; `{ on }` another member of the fleet, or `{ near }` a node on one, spawns a Root, Resetting
     * or Leased child there, charged to this node's own grant on that member (`keynode grant <nodeId>`).
     */
    placement?: 'load' | { near: string | NodeRefLike } | { on: string };
  }): Promise<NodeRefLike>;
  /** Lifetime values for ctx.spawn: ctx.Lifetime.linked(), .ephemeral(), .root(), .resetting(s), .leased(s, { node, fn }). */
  readonly Lifetime: {
    root(): { kind: 'root' };
    ephemeral(): { kind: 'ephemeral' };
    linked(): { kind: 'linked' };
    resetting(seconds: number): { kind: 'resetting'; seconds: number };
    leased(seconds: number, check: { node: string | NodeRefLike; fn: (ctx: Ctx) => unknown }): { kind: 'leased'; seconds: number };
  };
  destroy(node: string | NodeRefLike): Promise<void>;
  destroySelf(): Promise<void>;
}
