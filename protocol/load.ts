/**
 * @module protocol/load
 * What a container says of its load (the reply to a `load` message) and of the fleet it belongs to, and the
 * checks a reader applies to it. A load report comes from a peer or a container a client talks to: both are
 * hostile input, so every number is checked to be a non-negative integer below a bound and every member
 * entry to be an origin, and a report that fails is refused whole (a half-believed report would still steer
 * placement).
 * @example
 * const load = checkLoadReport(await channel.request('load', channel.containerId, {}), channel.origin);
 */
import { KeynodeError } from './errors.js';
import { isNodeId, type NodeId } from './ids.js';

/** A container's own load, as it measured it when it answered. */
export interface Load {
  /** Nodes with a process, and the most the capacity allows. */
  awake: number;
  maxAwake: number;
  /** Evals running, and waiting for their node. */
  active: number;
  queued: number;
  /** Memory granted to awake nodes, and the capacity's, in MB. */
  memoryMB: number;
  maxMemoryMB: number;
  /** Nodes the root budget can still hand out (spawns by the operator and grants to tenants draw on it). */
  nodesLeft: number;
}

/** The asking principal's own budget on that container: how much room it has there. */
export interface Room {
  maxNodes: number;
  nodes: number;
  maxAwake: number;
  awake: number;
}

export type MemberState = 'up' | 'down' | 'refused';

/** One member of the fleet as a container sees it. */
export interface MemberView {
  url: string;
  containerId?: NodeId;
  state: MemberState;
  /** Its last load report, and how old it was when this view was made. */
  load?: Load;
  ageMs?: number;
  /** Why it is down or refused. */
  error?: string;
  /** The `dns:` entry it was found through, when it was. */
  via?: string;
}

/** The reply to `load`. */
export interface LoadReport extends Load {
  containerId: NodeId;
  url: string;
  /** Present when the asker has a budget there (the operator always has: the capacity). */
  room?: Room;
  /** The other members this container knows of (its `peers`, resolved), not including itself. */
  members: MemberView[];
}

/** Past this, a count is absurd for one container: such a report is refused, not clamped. */
export const MAX_LOAD_COUNT = 1e12;
/** Members one report may list; a fleet larger than this is not a case keynode plans for. */
export const MAX_MEMBERS = 256;
const MAX_URL = 512;
const MAX_ERROR = 300;

const LOAD_KEYS = ['awake', 'maxAwake', 'active', 'queued', 'memoryMB', 'maxMemoryMB', 'nodesLeft'] as const;
const ROOM_KEYS = ['maxNodes', 'nodes', 'maxAwake', 'awake'] as const;

function refuse(origin: string, what: string): never {
  throw new KeynodeError('ERR_BAD_REPLY', `${origin} sent a load report with ${what}; it is not believed`);
}

function count(v: unknown, origin: string, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > MAX_LOAD_COUNT) refuse(origin, `\`${name}\` = ${String(v).slice(0, 40)} (expected an integer from 0 to ${MAX_LOAD_COUNT})`);
  return v;
}

/** An `http(s)://host[:port]` origin, or undefined. */
export function originOf(v: unknown): string | undefined {
  if (typeof v !== 'string' || v.length > MAX_URL) return undefined;
  try {
    const u = new URL(v);
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password) return undefined;
    return u.origin;
  } catch {
    return undefined;
  }
}

export function checkLoad(v: unknown, origin: string): Load {
  if (typeof v !== 'object' || v === null) refuse(origin, 'no load');
  const o = v as Record<string, unknown>;
  const load = {} as Load;
  for (const k of LOAD_KEYS) load[k] = count(o[k], origin, k);
  if (load.awake > load.maxAwake || load.memoryMB > load.maxMemoryMB) refuse(origin, `more in use than its capacity (awake ${load.awake} of ${load.maxAwake}, ${load.memoryMB} of ${load.maxMemoryMB} MB)`);
  return load;
}

function checkRoom(v: unknown, origin: string): Room {
  if (typeof v !== 'object' || v === null) refuse(origin, 'a malformed `room`');
  const o = v as Record<string, unknown>;
  const room = {} as Room;
  for (const k of ROOM_KEYS) room[k] = count(o[k], origin, `room.${k}`);
  return room;
}

function checkMember(v: unknown, origin: string): MemberView {
  if (typeof v !== 'object' || v === null) refuse(origin, 'a malformed member');
  const o = v as Record<string, unknown>;
  const url = originOf(o.url);
  if (!url) refuse(origin, `a member whose URL is not an http(s) origin (${String(o.url).slice(0, 80)})`);
  if (o.state !== 'up' && o.state !== 'down' && o.state !== 'refused') refuse(origin, 'a member of unknown state');
  const m: MemberView = { url, state: o.state };
  if (o.containerId !== undefined) {
    if (!isNodeId(o.containerId)) refuse(origin, 'a member whose containerId is not a container ID');
    m.containerId = o.containerId;
  }
  if (o.load !== undefined) m.load = checkLoad(o.load, origin);
  if (o.ageMs !== undefined) m.ageMs = count(o.ageMs, origin, 'ageMs');
  if (typeof o.error === 'string') m.error = o.error.slice(0, MAX_ERROR);
  if (typeof o.via === 'string' && o.via.length <= MAX_URL) m.via = o.via;
  return m;
}

/**
 * Checks a load report from the container at `origin` (whose ID the session already proved to be
 * `containerId`, when given): throws ERR_BAD_REPLY naming the first thing wrong.
 */
export function checkLoadReport(v: unknown, origin: string, containerId?: NodeId): LoadReport {
  if (typeof v !== 'object' || v === null) refuse(origin, 'no body');
  const o = v as Record<string, unknown>;
  if (!isNodeId(o.containerId)) refuse(origin, 'no containerId');
  if (containerId !== undefined && o.containerId !== containerId) refuse(origin, `the containerId ${o.containerId}, not ${containerId}`);
  const url = originOf(o.url);
  if (!url) refuse(origin, 'a URL that is not an http(s) origin');
  if (!Array.isArray(o.members) || o.members.length > MAX_MEMBERS) refuse(origin, `a member list that is not a list of at most ${MAX_MEMBERS}`);
  const report: LoadReport = { ...checkLoad(o, origin), containerId: o.containerId, url, members: o.members.map((m) => checkMember(m, origin)) };
  if (o.room !== undefined) report.room = checkRoom(o.room, origin);
  return report;
}
