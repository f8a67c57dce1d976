/**
 * @module container/spawner
 * Spawning: policies checked and narrowed, budget carved, then (only for what fits) keys made and sealed,
 * capabilities and lease checks bound to grants, and every record written in one batch. No process starts.
 */
import {
  checkSandbox, checkSpawnSpec, encode, isPlainObject, KeynodeError,
  type Bodies, type BudgetSpec, type NodeId, type SandboxSpec, type SpawnSpec,
} from '../../protocol/index.js';
import { RecordTemplate, type NodeRecord } from '../../store/index.js';
import { SEALED_BYTES } from '../seal.js';
import type { LifetimePolicy } from './lifetime-policy.js';
import type { Runtime } from '../runtime.js';
import { childRecords, yieldToLoop, YIELD_EVERY } from './binding.js';
import { contactWithin, sameCall } from './contacts.js';
import type { MintedKey } from './keygen.js';

export interface SpawnedNode {
  id: NodeId;
  url: string;
  /** The node's private key, for a client spawner (it proves it when destroying). */
  secretKey: Uint8Array;
}

const MAX_BATCH = 10_000;
/** Nodes one group commit takes at most. */
const MAX_GROUP = 10_000;
/**
 * A client's grant for one key and name, whatever shape `grants` arrived in. Own entries only: a capability
 * named `toString` must not find Object.prototype's and take it for a grant.
 */
function grantIn(grants: unknown, name: string): unknown {
  return typeof grants === 'object' && grants !== null && Object.hasOwn(grants, name) ? (grants as Record<string, unknown>)[name] : undefined;
}

function sandboxDenied(message: string): KeynodeError {
  return new KeynodeError('ERR_SANDBOX', message);
}

/**
 * A node never grants a child more than it has: lifetimes it may give, contacts within its own, resources no
 * bigger, spawn rights no wider. (Capabilities are checked when they are bound.) `origin` is this container's:
 * contacts and lease checks compare as the contact check does, by node ID and, for a node elsewhere, origin.
 */
export function checkNarrower(parent: NodeRecord, sandbox: SandboxSpec, lifetime: SpawnSpec['lifetime'] | undefined, origin: string): void {
  const mine = parent.sandbox;
  if (lifetime) {
    if (mine.spawn === false) throw sandboxDenied(`node ${parent.id} may not spawn (sandbox.spawn is false)`);
    if (!mine.spawn.lifetimes.includes(lifetime.kind)) throw sandboxDenied(`node ${parent.id} may spawn only ${mine.spawn.lifetimes.join(', ') || 'no'} nodes, not ${lifetime.kind}`);
  }
  for (const k of ['memoryMB', 'timeoutMs', 'maxMessageBytes'] as const) {
    if (sandbox[k] > mine[k]) throw sandboxDenied(`a child may not have more ${k} (${sandbox[k]}) than its parent (${mine[k]})`);
  }
  // A node that runs only in processes of its own cannot give a child a process others used before it.
  if ((mine.isolation ?? 'tenant') === 'process' && sandbox.isolation !== 'process') {
    throw sandboxDenied(`a child of node ${parent.id} must have sandbox.isolation 'process', as its parent has`);
  }
  if (sandbox.spawn !== false) {
    const allowed = mine.spawn === false ? [] : mine.spawn.lifetimes;
    const extra = sandbox.spawn.lifetimes.filter((l) => !allowed.includes(l));
    if (extra.length) throw sandboxDenied(`a child may not spawn lifetimes its parent may not: ${extra.join(', ')}`);
  }
  if (mine.contacts === 'any') return;
  const own = { id: parent.id, contacts: mine.contacts };
  // A lease check is a call the container makes for the child: it goes only where the parent may call, or
  // is exactly a capability the parent holds (which the child then gets, grant and all).
  if (lifetime?.kind === 'leased') {
    const check = lifetime.check;
    const asCap = Object.values(mine.capabilities).some((c) => sameCall(c, check, origin));
    if (!asCap && !contactWithin(own, check.node, origin)) throw sandboxDenied(`a child's lease check may call only nodes its parent may contact; ${check.node} is not one`);
  }
  if (sandbox.contacts === 'any') throw sandboxDenied("a child may not have contacts 'any' when its parent has a list");
  for (const c of sandbox.contacts) {
    if (!contactWithin(own, c, origin)) throw sandboxDenied(`a child may not contact ${c}: its parent may not (a node elsewhere must be listed by the same URL)`);
  }
}

/** Sandbox defaults for a node's child come from the parent, so an omitted field never widens anything. */
function inherit(raw: unknown, parent: NodeRecord): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const r = raw as Record<string, unknown>;
  if (r.sandbox !== undefined && (typeof r.sandbox !== 'object' || r.sandbox === null)) return raw;
  const s = { ...(r.sandbox as Record<string, unknown> | undefined) };
  for (const k of ['memoryMB', 'timeoutMs', 'maxMessageBytes'] as const) s[k] ??= parent.sandbox[k];
  s.isolation ??= parent.sandbox.isolation ?? 'tenant';
  return { ...r, sandbox: s };
}

type SpawnKeys = NonNullable<Bodies['spawn']['keys']>;

interface PendingSpawn {
  /** The spawner's record when it is a node. */
  parent: NodeRecord | undefined;
  count: number;
  spec: SpawnSpec;
  /** Client-chosen seeds (shape already checked); an entry left undefined gets a new key. */
  keys: SpawnKeys | undefined;
  resolve(nodes: SpawnedNode[]): void;
  reject(e: unknown): void;
}

/** A spawn whose budget is carved: what it was given, and what to give back if it fails before the commit. */
interface Carved {
  s: PendingSpawn;
  budget: BudgetSpec;
  need: number;
}

export class Spawner {
  readonly #rt: Runtime;
  readonly #lifetimes: LifetimePolicy;
  /** Spawns waiting for their spawner's budget lock: whoever gets the lock commits all of them in one batch. */
  readonly #waiting = new Map<NodeId, PendingSpawn[]>();

  constructor(runtime: Runtime, lifetimes: LifetimePolicy) {
    this.#rt = runtime;
    this.#lifetimes = lifetimes;
  }

  /**
   * `from` spawns; `parent` is its record when it is a node. `keys` are client-chosen seeds (with grants the
   * client signed for capabilities on nodes it holds keys of).
   *
   * Everything cheap that can refuse comes first: shape, policies, depth here, then the budget under the
   * spawner's lock. Only a spawn that fits gets keys made, derived, sealed or grants checked, so a principal
   * without budget costs the container a signature check and a store read, whatever count it asks for.
   */
  async spawn(from: NodeId, parent: NodeRecord | undefined, raw: unknown, count: number, keys?: Bodies['spawn']['keys']): Promise<SpawnedNode[]> {
    if (!Number.isInteger(count) || count < 1 || count > MAX_BATCH) throw new KeynodeError('ERR_BAD_POLICY', `spawn count must be an integer from 1 to ${MAX_BATCH}`);
    if (keys !== undefined) {
      if (!Array.isArray(keys) || keys.length !== count) throw new KeynodeError('ERR_BAD_POLICY', 'spawn `keys` must have one entry per node');
      for (const k of keys) {
        if (k !== undefined && !(k && k.seed instanceof Uint8Array && k.seed.length === 32)) throw new KeynodeError('ERR_BAD_POLICY', 'each spawn key is a 32-byte seed');
      }
    }
    const spec = checkSpawnSpec(parent ? inherit(raw, parent) : raw, this.#rt.limits);
    if (parent) checkNarrower(parent, spec.sandbox, spec.lifetime, this.#rt.origin);
    const depth = parent ? parent.ancestors.length + 1 : 1;
    if (depth > this.#rt.options.maxDepth) throw new KeynodeError('ERR_BUDGET_EXHAUSTED', `spawn trees are at most ${this.#rt.options.maxDepth} deep`);
    return new Promise<SpawnedNode[]>((resolve, reject) => this.#enqueue(from, { parent, count, spec, keys, resolve, reject }));
  }

  /**
   * A node's spawn of a child that goes to another container (child-elsewhere.ts), checked here as a spawn
   * here would be (shape, the parent's sandbox.spawn, narrowing, depth) before anything is sent: the spec
   * with the parent's defaults filled in, as sent, and as checked.
   */
  checkChild(parent: NodeRecord, raw: unknown): { body: Record<string, unknown>; spec: SpawnSpec } {
    const body = inherit(raw, parent);
    const spec = checkSpawnSpec(body, this.#rt.limits);
    checkNarrower(parent, spec.sandbox, spec.lifetime, this.#rt.origin);
    if (parent.ancestors.length + 1 > this.#rt.options.maxDepth) throw new KeynodeError('ERR_BUDGET_EXHAUSTED', `spawn trees are at most ${this.#rt.options.maxDepth} deep`);
    return { body: body as Record<string, unknown>, spec };
  }

  /**
   * Group commit: spawns by one spawner wait for its budget lock together, and whoever gets it carves their
   * budgets, has all their keys made in one request and writes them in one LevelDB batch. A group is at most
   * MAX_GROUP nodes, which bounds the key work one spawner has in flight; the rest waits for the next.
   */
  #enqueue(from: NodeId, spawn: PendingSpawn): void {
    const group = this.#waiting.get(from);
    if (group) return void group.push(spawn);
    this.#waiting.set(from, [spawn]);
    this.#lockAndCommit(from);
  }

  #lockAndCommit(from: NodeId): void {
    let group: PendingSpawn[] = [];
    void this.#rt.budgets.locked(from, async () => {
      const all = this.#waiting.get(from) ?? [];
      this.#waiting.delete(from); // later spawns form the next group
      let nodes = 0;
      let k = 0;
      while (k < all.length && (k === 0 || nodes + all[k]!.count <= MAX_GROUP)) nodes += all[k++]!.count;
      group = all.slice(0, k);
      const rest = all.slice(k);
      if (rest.length) {
        const later = this.#waiting.get(from);
        if (later) later.unshift(...rest);
        else {
          this.#waiting.set(from, rest);
          this.#lockAndCommit(from);
        }
      }
      await this.#commitGroup(from, group);
    }).catch((e: unknown) => {
      for (const s of group) s.reject(e);
    });
  }

  /** Inside the spawner's budget lock. */
  async #commitGroup(from: NodeId, group: PendingSpawn[]): Promise<void> {
    if (this.#rt.destroying.has(from)) {
      // Its destroy lists its children after taking this lock: a child committed now would outlive it.
      const gone = new KeynodeError('ERR_NODE_DESTROYED', `node ${from} is being destroyed and spawns nothing more`);
      for (const s of group) s.reject(gone);
      return;
    }
    const parent = group[0]!.parent;
    const budgets = this.#rt.budgets;
    const limits = parent ? parent.budget : await budgets.limitsOf(from);
    const record = await budgets.holderRecord(from);
    const carved: Carved[] = [];
    for (const s of group) {
      try {
        const budget = budgets.carve(from, limits, s.count, s.spec.budget, record);
        carved.push({ s, budget, need: s.count * (1 + budget.maxNodes) });
      } catch (e) {
        s.reject(e);
      }
    }
    if (!carved.length) return;

    const ancestors = parent ? [...parent.ancestors, parent.id] : [from];
    const fresh = carved.reduce((n, c) => n + (c.s.keys ? c.s.keys.filter((k) => k === undefined).length : c.s.count), 0);
    let minted: MintedKey[];
    try {
      minted = fresh ? await this.#rt.keyring.mint.mint(from, fresh) : [];
    } catch (e) {
      for (const c of carved) c.s.reject(e);
      return;
    }

    // Stamped after the keys are made: a Resetting or Leased child's first period starts when it exists.
    const now = Date.now();
    const txn = this.#rt.store.txn();
    const taken = new Set<NodeId>();
    const committed: { c: Carved; records: NodeRecord[]; seeds: Uint8Array[] }[] = [];
    let next = 0;
    for (const c of carved) {
      const { s } = c;
      const own = s.keys ? s.keys.filter((k) => k === undefined).length : s.count;
      const fromMint = minted.slice(next, next + own);
      next += own;
      try {
        const base = this.#baseRecord(from, ancestors, s.spec, c.budget, now);
        // Siblings that differ only in ID and key (no grants bound, no chosen keys) share one encoding.
        const template = s.count > 1 && !s.keys && s.spec.lifetime.kind !== 'leased' && Object.keys(s.spec.sandbox.capabilities).length === 0 ? RecordTemplate.of(base) : undefined;
        const keys = s.keys ? await this.#clientKeys(from, s.keys, fromMint, ancestors, taken) : fromMint;
        const records = await childRecords(this.#rt, from, parent, s.spec, base, keys, (i, name) => grantIn(s.keys?.[i]?.grants, name));
        const encoded = template?.encodeAll(records);
        // Added to the batch only once the whole spawn is built: a spawn that fails leaves nothing in it.
        for (const [i, r] of records.entries()) {
          txn.putNode(r, encoded?.[i]);
          this.#lifetimes.onSpawn(r, txn, now);
          if (i % YIELD_EVERY === YIELD_EVERY - 1) await yieldToLoop();
        }
        committed.push({ c, records, seeds: keys.map((k) => k.seed) });
      } catch (e) {
        record.usedNodes -= c.need;
        s.reject(e);
      }
    }
    if (!committed.length) return;
    txn.put('b', from, encode(record));
    try {
      await txn.commit();
    } catch (e) {
      for (const { c } of committed) c.s.reject(e);
      return;
    }
    // Every node URL is this container's origin and an ID: format it once, not once per node.
    const some = committed[0]!.records[0]!.id;
    const origin = this.#rt.urlOf(some).slice(0, -some.length);
    for (const { c, records, seeds } of committed) {
      for (const [i, rec] of records.entries()) {
        if (rec.lifetime.kind === 'ephemeral') this.#rt.ephemeralKeys.set(rec.id, seeds[i]!);
        this.#lifetimes.afterSpawn(rec, now, parent !== undefined);
      }
      c.s.resolve(records.map((rec, i) => ({ id: rec.id, url: origin + rec.id, secretKey: seeds[i]! })));
    }
  }

  /** What every child of one spawn shares: all but its ID, key and bound grants. */
  #baseRecord(from: NodeId, ancestors: NodeId[], spec: SpawnSpec, budget: BudgetSpec, now: number): NodeRecord {
    const rec: NodeRecord = { id: '', parent: from, ancestors, lifetime: spec.lifetime, sandbox: { ...spec.sandbox, capabilities: {} }, acl: spec.acl, budget, createdAt: now };
    if (spec.lifetime.kind === 'ephemeral') rec.boot = this.#rt.bootId;
    else rec.sealedKey = new Uint8Array(SEALED_BYTES);
    return rec;
  }

  /**
   * Keys for a spawn that chose some of its own: derived and sealed on the mint's threads. A client-chosen
   * key must name a node nobody is yet: not another in this group, not a principal, not a node here (alive,
   * destroyed while its tombstone stands (store/tombstones.ts), or with a budget record: every principal with a
   * grant has one, and a node's goes with it).
   */
  async #clientKeys(from: NodeId, keys: SpawnKeys, minted: MintedKey[], ancestors: NodeId[], taken: Set<NodeId>): Promise<MintedKey[]> {
    const chosen = keys.flatMap((k) => (k === undefined ? [] : [k.seed]));
    const derived = await this.#rt.keyring.mint.derive(from, chosen);
    let d = 0;
    let m = 0;
    const out = keys.map((k) => (k === undefined ? minted[m++]! : derived[d++]!));
    const ids = derived.map((k) => k.id);
    for (const id of ids) {
      if (taken.has(id)) throw new KeynodeError('ERR_BAD_POLICY', 'spawn keys repeat within the batch');
      taken.add(id);
    }
    const store = this.#rt.store;
    const [nodes, tombstones, holders] = await Promise.all([store.getMany('n', ids), store.getMany('t', ids), store.getMany('b', ids)]);
    for (const [i, id] of ids.entries()) {
      if (id === from || id === this.#rt.operator || ancestors.includes(id) || this.#rt.supervisor.get(id) || nodes[i] || tombstones[i] || holders[i]) {
        throw new KeynodeError('ERR_BAD_POLICY', `a spawn key names ${id}, which is already a node or a principal here`);
      }
    }
    return out;
  }

  /** A parent widens or narrows its child's ACL and sandbox (not its capabilities, which are bound at spawn). */
  async update(from: NodeId, id: NodeId, body: { acl?: unknown; sandbox?: unknown }): Promise<NodeRecord> {
    // A node being moved changes after the move (here or there), unless the change comes from inside the move.
    const held = this.#rt.holds.get(id);
    if (held && this.#rt.holds.get(from) !== held) await held;
    const rec = await this.#rt.lookup(id);
    if (rec.parent !== from) throw new KeynodeError('ERR_ACCESS_DENIED', `only the parent of node ${id} may change its ACL or sandbox`);
    const next: NodeRecord = { ...rec };
    if (body.sandbox !== undefined) {
      if (!isPlainObject(body.sandbox) || 'capabilities' in body.sandbox) {
        throw new KeynodeError('ERR_BAD_POLICY', 'update: `sandbox` is an object of fields to change; capabilities are bound at spawn and cannot change');
      }
      const { capabilities, ...current } = rec.sandbox;
      next.sandbox = { ...checkSandbox({ ...current, ...(body.sandbox as object) }, this.#rt.limits), capabilities };
      const parentRec = await this.#rt.find(from);
      if (parentRec) checkNarrower(parentRec, next.sandbox, undefined, this.#rt.origin);
    }
    if (body.acl !== undefined) next.acl = checkSpawnSpec({ lifetime: { kind: 'root' }, acl: body.acl }, this.#rt.limits).acl;
    // Written only if the node still exists: an update must never bring back a node destroyed meanwhile.
    if (this.#rt.destroying.has(id) || !(await this.#rt.store.getNode(id))) throw new KeynodeError('ERR_NODE_DESTROYED', `node ${id} was destroyed`);
    // A move that began meanwhile would copy the record before this write: the change waits for it instead.
    const moving = this.#rt.holds.get(id);
    if (moving && this.#rt.holds.get(from) !== moving) return this.update(from, id, body);
    await this.#rt.store.txn().put('n', id, encode(next)).commit();
    this.#rt.recordChanged(next);
    return next;
  }
}
