/**
 * @module container/migration/importer
 * The target's side of a move. Parts arrive first and are kept aside (sublevel `p`, invisible to lookups);
 * `prepare` checks everything (the source is a configured peer, the records form the subtree they claim,
 * every key belongs to a node of the move, every private key matches its node's ID, there is room) and writes
 * the records with the keys sealed under this container's master key, durably, before it answers; `activate`
 * writes it all into the store in one batch, once the source says its forwarding record is committed. A
 * request for a node prepared here but not active asks the source whether it committed, and activates then:
 * the node is served by exactly one container at any time.
 */
import {
  boxShared, decode, encode, formatNodeUrl, isNodeId, KeynodeError, openKeys, parseNodeUrl, publicKeyFromSeed, idFromPublicKey, storageBytes,
  type Bodies, type NodeId,
} from '../../protocol/index.js';
import { entryBytes, nodeRange, tombstoneKey, usageKey, type NodeRecord, type Tombstone } from '../../store/index.js';
import { movedError, type Runtime } from '../runtime.js';
import type { LifetimePolicy } from '../policies/lifetime-policy.js';
import { checkEntry, checkRecords, type Entry } from './package.js';
import type { PhaseHook } from './pause.js';

/** Another node of a prepared move: where its move's record is. */
interface Pointer {
  top: NodeId;
  move: string;
}

/** A move prepared here: what `activate` writes. */
interface Prepared {
  from: NodeId;
  origin: string;
  move: string;
  parts: number;
  records: NodeRecord[];
  /** Nodes of the move whose keys live in memory only (Ephemeral): lost if this container restarts first. */
  ephemeral: NodeId[];
  need: number;
  bytes: number;
  usage: number;
}

const MOVE_ID = /^[0-9a-f]{32}$/;
const MAX_PARTS = 1 << 16;
/** Prepared moves not yet activated, counted against capacity until they are (bounded: entries are small). */
const MAX_PENDING = 10_000;

const partKey = (node: NodeId, move: string, part: number): string => `${node}${move}${part.toString(16).padStart(6, '0')}`;

function bad(what: string): never {
  throw new KeynodeError('ERR_BAD_MESSAGE', `malformed move: ${what}`);
}

export interface ImporterDeps {
  rt: Runtime;
  lifetimes: LifetimePolicy;
  /** True when `from` is the container ID of a configured peer; and that peer's origin. */
  peerOrigin(from: NodeId): Promise<string | undefined>;
  /** Asks the container at `origin` where a node lives (its `locate`). */
  locate(origin: string, id: NodeId): Promise<{ url?: string; move?: string }>;
  forget(id: NodeId): void;
  onPhase?: PhaseHook | undefined;
}

export class Importer {
  readonly #d: ImporterDeps;
  /** Seeds of Ephemeral nodes of prepared moves: never written to disk. */
  readonly #ephemeralSeeds = new Map<NodeId, Uint8Array>();
  /** Nodes and bytes prepared and not yet activated, by move. */
  readonly #pending = new Map<string, { need: number; bytes: number }>();
  /** Bytes of parts received for moves not prepared yet, by move. */
  readonly #parked = new Map<string, number>();
  readonly #activating = new Map<string, Promise<void>>();
  readonly #shared = new Map<string, Uint8Array>();

  constructor(deps: ImporterDeps) {
    this.#d = deps;
  }

  async #peer(from: NodeId): Promise<string> {
    const origin = await this.#d.peerOrigin(from);
    if (!origin) throw new KeynodeError('ERR_NOT_PEER', `container ${from} is not one of this container's peers (--peers); it cannot move nodes here`);
    return origin;
  }

  /** Storage left on this container, less what prepared moves will take and parts waiting for their records hold. */
  async #roomBytes(): Promise<number> {
    const { rt } = this.#d;
    const [used] = await rt.store.counters([usageKey(rt.operator)]);
    let pending = 0;
    for (const p of this.#pending.values()) pending += p.bytes;
    for (const b of this.#parked.values()) pending += b;
    return storageBytes(rt.options.capacity.storageMB) - used! - pending;
  }

  async chunk(from: NodeId, body: Bodies['moveChunk']): Promise<null> {
    await this.#peer(from);
    const { move, node, part, entries } = body;
    if (typeof move !== 'string' || !MOVE_ID.test(move) || !isNodeId(node)) bad('`move` is 32 hex digits and `node` a node ID');
    if (!Number.isSafeInteger(part) || part < 0 || part >= MAX_PARTS) bad(`\`part\` is an integer below ${MAX_PARTS}`);
    if (!Array.isArray(entries) || entries.length > 1_000_000) bad('`entries` is a list');
    let bytes = 0;
    for (const e of entries) {
      if (!Array.isArray(e) || typeof e[1] !== 'string' || !(e[2] instanceof Uint8Array)) bad('an entry is [sublevel, key, value]');
      bytes += entryBytes(e[1], e[2].length);
    }
    // Parts wait on disk for their records: a peer cannot park more there than this container has room for.
    if (bytes > (await this.#roomBytes())) throw new KeynodeError('ERR_BUDGET_EXHAUSTED', `this container has no room for ${bytes} more bytes of moved state`);
    if (!this.#parked.has(move) && this.#parked.size >= MAX_PENDING) throw new KeynodeError('ERR_OVERLOADED', 'too many moves are sending parts here; retry later');
    // Counted until the move is prepared (then as pending) or this container restarts: an abandoned move's
    // parts take room from later ones rather than letting a peer fill the disk.
    this.#parked.set(move, (this.#parked.get(move) ?? 0) + bytes);
    await this.#d.rt.store.sub('p').put(partKey(node, move, part), encode(entries));
    return null;
  }

  async prepare(from: NodeId, body: Bodies['movePrepare']): Promise<{ url: string }> {
    const origin = await this.#peer(from);
    const { rt } = this.#d;
    const { move, node, parts } = body;
    if (typeof move !== 'string' || !MOVE_ID.test(move) || !isNodeId(node)) bad('`move` is 32 hex digits and `node` a node ID');
    if (!Number.isSafeInteger(parts) || parts < 0 || parts > MAX_PARTS) bad('`parts` is a count of parts');
    const records = checkRecords(body.records, node, rt.limits);
    const seeds = openKeys(body.seeds, rt.keyring.box, records.length, (pk) => this.#sharedWith(pk));
    const ids = new Set<string>(records.map((r) => r.id));
    for (const [i, rec] of records.entries()) {
      // The ID is the public key: a key that is not the node's would let a peer sign as someone else.
      if (idFromPublicKey(publicKeyFromSeed(seeds[i]!)) !== rec.id) bad(`the key sent for ${rec.id} is not that node's`);
    }
    const tops = records.filter((r) => !ids.has(r.parent));
    if (tops.some((t) => t.lifetime.kind === 'ephemeral')) throw new KeynodeError('ERR_NOT_MOVABLE', 'an Ephemeral node moves only with its parent');
    const topIds = new Set<string>(tops.map((t) => t.id));
    const here = await rt.store.getMany('n', [...ids]);
    const dead = await rt.store.getMany('t', [...ids]);
    if (here.some(Boolean) || dead.some(Boolean)) throw new KeynodeError('ERR_NOT_MOVABLE', `a node of this move lives here already, or was destroyed here (its tombstone stands: --tombstone-ttl-ms)`);
    // Every part is read back and checked: nothing a peer sent is trusted because it was accepted in parts.
    let bytes = 0;
    let usage = 0;
    for (let part = 0; part < parts; part++) {
      const v = await rt.store.sub('p').get(partKey(node, move, part));
      if (!v) bad(`part ${part} of ${parts} did not arrive`);
      for (const raw of decode(v) as unknown[]) {
        const [sub, key, value] = checkEntry(raw, ids);
        bytes += entryBytes(key, value.length);
        if (sub === 's' && topIds.has(key)) usage += Number(Buffer.from(value).toString('latin1'));
      }
    }
    const need = tops.reduce((n, t) => n + 1 + t.budget.maxNodes, 0);
    if (this.#pending.size >= MAX_PENDING) throw new KeynodeError('ERR_OVERLOADED', 'too many moves are prepared here and not yet activated; retry later');
    await rt.budgets.locked(rt.operator, async () => {
      const root = await rt.budgets.holderRecord(rt.operator);
      let pendingNodes = 0;
      for (const p of this.#pending.values()) pendingNodes += p.need;
      const left = rt.options.capacity.maxNodes - root.usedNodes - pendingNodes;
      if (need > left) throw new KeynodeError('ERR_BUDGET_EXHAUSTED', `this container has room for ${left} more nodes; the move needs ${need} (1 + maxNodes of each node moved)`);
      const room = await this.#roomBytes();
      if (bytes > room) throw new KeynodeError('ERR_BUDGET_EXHAUSTED', `this container has ${room} bytes of storage left; the move needs ${bytes}`);
      this.#pending.set(move, { need, bytes });
      this.#parked.delete(move);
    });
    const ephemeral: NodeId[] = [];
    for (const [i, rec] of records.entries()) {
      if (rec.lifetime.kind === 'ephemeral') {
        ephemeral.push(rec.id);
        this.#ephemeralSeeds.set(rec.id, seeds[i]!);
      } else rec.sealedKey = rt.keyring.seal(rec.id, seeds[i]!);
      seeds[i]!.fill(0);
    }
    const prepared: Prepared = { from, origin, move, parts, records, ephemeral, need, bytes, usage };
    // A new attempt replaces an older one of the same node: the source committed neither.
    const old = await this.#prepared(node);
    const t = rt.store.txn().put('p', node, encode(prepared));
    // Every other node of the move points at it: a request for any of them can find the move and activate it.
    for (const rec of records.slice(1)) t.put('p', rec.id, encode({ top: node, move } satisfies Pointer));
    await t.commit();
    if (old && old.move !== move) await this.#clearParts(node, old.move);
    await this.#d.onPhase?.('target-prepared', node);
    return { url: rt.urlOf(node) };
  }

  /** The box key shared with a sender, cached (bounded): a peer seals every move with the same key. */
  #sharedWith(pk: Uint8Array): Uint8Array {
    const k = Buffer.from(pk).toString('base64');
    let shared = this.#shared.get(k);
    if (!shared) {
      shared = boxShared(pk, this.#d.rt.keyring.box);
      if (this.#shared.size >= 1024) this.#shared.delete(this.#shared.keys().next().value!);
      this.#shared.set(k, shared);
    }
    return shared;
  }

  async #prepared(node: NodeId): Promise<Prepared | undefined> {
    const v = await this.#d.rt.store.sub('p').get(node);
    if (!v) return undefined;
    const p = decode(v) as Prepared | Pointer;
    return 'top' in p ? undefined : p;
  }

  /** The prepared move a node belongs to (as its top, or pointed at from its top's), if any. */
  async #preparedOf(id: NodeId): Promise<Prepared | undefined> {
    const v = await this.#d.rt.store.sub('p').get(id);
    if (!v) return undefined;
    const p = decode(v) as Prepared | Pointer;
    if (!('top' in p)) return p;
    const top = await this.#prepared(p.top);
    return top?.move === p.move ? top : undefined;
  }

  #clearParts(node: NodeId, move: string): Promise<void> {
    return this.#d.rt.store.sub('p').clear(nodeRange(`${node}${move}`));
  }

  /** Serves the nodes of a prepared move. Idempotent: a node active here already from this move is done. */
  async activate(from: NodeId, body: Bodies['moveActivate']): Promise<{ url: string }> {
    await this.#peer(from);
    const { move, node } = body;
    if (typeof move !== 'string' || !MOVE_ID.test(move) || !isNodeId(node)) bad('`move` is 32 hex digits and `node` a node ID');
    await this.#activate(from, move, node);
    return { url: this.#d.rt.urlOf(node) };
  }

  /** One activation per move at a time, whichever of its nodes asked for it. */
  #activate(from: NodeId, move: string, node: NodeId): Promise<void> {
    let p = this.#activating.get(move);
    if (!p) {
      p = this.#write(from, move, node).finally(() => this.#activating.delete(move));
      this.#activating.set(move, p);
    }
    return p;
  }

  async #write(from: NodeId, move: string, id: NodeId): Promise<void> {
    const { rt, lifetimes } = this.#d;
    const prepared = await this.#preparedOf(id);
    if (!prepared) {
      if (await rt.store.getNode(id)) return; // activated already (a retry of a move that finished)
      throw new KeynodeError('ERR_NODE_NOT_FOUND', `no move of node ${id} is prepared here; start the move again`);
    }
    const node = prepared.records[0]!.id;
    if (prepared.from !== from || prepared.move !== move) throw new KeynodeError('ERR_NOT_MOVABLE', `the move prepared here for node ${node} is another one (${prepared.move}); start the move again`);
    await this.#d.onPhase?.('target-activating', node);
    const now = Date.now();
    const wake: number[] = [];
    await rt.budgets.locked(rt.operator, async () => {
      const t = rt.store.txn();
      // The moved lifetime states, as the parts carry them: they are in this batch, not yet in the store.
      const lifeStates = new Map<string, Uint8Array>();
      for (let part = 0; part < prepared.parts; part++) {
        const key = partKey(node, move, part);
        const v = await rt.store.sub('p').get(key);
        if (!v) throw new KeynodeError('ERR_INTERNAL', `part ${part} of the move of ${node} is missing`);
        for (const [sub, k, value] of decode(v) as Entry[]) {
          t.put(sub as 'r', k, value);
          if (sub === 'x') lifeStates.set(k, value);
        }
        t.del('p', key);
      }
      for (const rec of prepared.records) {
        if (rec.lifetime.kind === 'ephemeral') rec.boot = rt.bootId;
        t.putNode(rec).del('m', rec.id).del('p', rec.id);
        const lt = rec.lifetime;
        if (lt.kind === 'resetting' || lt.kind === 'leased') {
          // A reset counts from the last activity the source recorded, a lease check is due when the source had
          // it due (from a source that did not record it: a period from the move); neither later than the
          // package could honestly say (a last activity after now, a check more than a period away: a source's
          // clock ahead of ours, or a hostile package), and the state kept here says what was scheduled.
          const stored = lifeStates.get(rec.id);
          const state = stored ? (decode(stored) as { last?: number; due?: number; failures?: number }) : {};
          const period = lt.seconds * 1000;
          let at: number;
          if (lt.kind === 'resetting') {
            const last = Math.min(state.last ?? now, now);
            at = last + period;
            if (state.last !== undefined && state.last !== last) t.put('x', rec.id, encode({ ...state, last }));
          } else {
            at = Math.floor(Math.min(state.due ?? now + period, now + period));
            if (state.due !== undefined && state.due !== at) t.put('x', rec.id, encode({ ...state, due: at }));
          }
          lifetimes.schedule.add(t, at, rec.id, lt.kind === 'resetting' ? 'reset' : 'lease');
          wake.push(at);
        }
      }
      // An ancestor destroyed here whose tombstone could expire: no longer, now that descendants of it live here.
      const moved = new Set(prepared.records.map((r) => r.id));
      const above = [...new Set(prepared.records.flatMap((r) => r.ancestors))].filter((a) => !moved.has(a));
      (await rt.store.getMany('t', above)).forEach((v, i) => {
        if (v) t.del('o', tombstoneKey((decode(v) as Tombstone).destroyedAt, above[i]!));
      });
      const root = await rt.budgets.holderRecord(rt.operator);
      root.usedNodes += prepared.need;
      t.put('b', rt.operator, encode(root)).del('p', node);
      t.count([{ key: usageKey(rt.operator), max: Infinity }], prepared.usage);
      await t.commit();
    });
    this.#pending.delete(move);
    await rt.store.sub('p').clear(nodeRange(node));
    for (const at of wake) lifetimes.schedule.notify(at);
    for (const rec of prepared.records) {
      this.#d.forget(rec.id);
      if (rec.lifetime.kind !== 'ephemeral') continue;
      const seed = this.#ephemeralSeeds.get(rec.id);
      this.#ephemeralSeeds.delete(rec.id);
      if (seed) rt.ephemeralKeys.set(rec.id, seed);
      lifetimes.held.add(rec.parent, rec.id);
    }
  }

  /**
   * A request for a node that is not served here: if a move of it is prepared here, the source says whether
   * it committed its forwarding record to this move (one `locate`); then this activates it and returns true.
   */
  async arrived(id: NodeId): Promise<boolean> {
    const prepared = await this.#preparedOf(id);
    if (!prepared) return false;
    const top = prepared.records[0]!.id;
    let answer: { url?: string; move?: string };
    try {
      answer = await this.#d.locate(prepared.origin, top);
    } catch (cause) {
      throw new KeynodeError('ERR_UNAVAILABLE', `node ${id} is moving here from ${prepared.origin}, which does not answer; retry later`, { cause });
    }
    const at = typeof answer.url === 'string' ? parseNodeUrl(answer.url) : undefined;
    const here = at !== undefined && at.id === top && at.origin === new URL(this.#d.rt.origin).origin;
    // The source still has it (the move was abandoned, or is under way): it is served there, never here.
    if (at !== undefined && at.id === top && !here) throw movedError(id, formatNodeUrl(at.origin, id));
    if (!here || answer.move !== prepared.move) throw new KeynodeError('ERR_UNAVAILABLE', `node ${id} is moving here from ${prepared.origin} and has not arrived; retry shortly`);
    await this.#activate(prepared.from, prepared.move, top);
    return true;
  }
}
