/**
 * @module container/spawner
 * Spawning: policies checked and narrowed, budget carved, capabilities and lease checks bound to grants,
 * keys made and sealed, and every record written in one batch. No process starts.
 */
import {
  checkSandbox, checkSpawnSpec, encode, generateKeyPair, isPlainObject, grantMessage, idFromPublicKey, keyPairFromSeed, KeynodeError, LEASE_GRANT, nameToId, resolveNode, signBytes, verifyGrant,
  type BoundCall, type Bodies, type BudgetSpec, type KeyPair, type NodeId, type SandboxSpec, type SpawnSpec,
} from '../../protocol/index.js';
import type { NodeRecord } from '../../store/index.js';
import type { LifetimePolicy } from './lifetime-policy.js';
import type { Runtime } from '../runtime.js';

export interface SpawnedNode {
  id: NodeId;
  url: string;
  /** The node's private key, for a client spawner (it proves it when destroying). */
  secretKey: Uint8Array;
}

const MAX_BATCH = 10_000;

function sandboxDenied(message: string): KeynodeError {
  return new KeynodeError('ERR_SANDBOX', message);
}

/**
 * A node never grants a child more than it has: lifetimes it may give, contacts within its own, resources no
 * bigger, spawn rights no wider. (Capabilities are checked when they are bound.)
 */
export function checkNarrower(parent: NodeRecord, sandbox: SandboxSpec, lifetime?: SpawnSpec['lifetime']): void {
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
  // A lease check is a call the container makes for the child: it must stay where the parent may call.
  if (lifetime?.kind === 'leased' && mine.contacts !== 'any') {
    const target = nameToId(lifetime.check.node);
    const own = new Set(mine.contacts.map(nameToId));
    const asCap = Object.values(mine.capabilities).some((c) => nameToId(c.node) === target && c.fn === lifetime.check.fn);
    if (target !== parent.id && !own.has(target) && !asCap) throw sandboxDenied(`a child's lease check may call only nodes its parent may contact; ${lifetime.check.node} is not one`);
  }
  if (mine.contacts !== 'any') {
    if (sandbox.contacts === 'any') throw sandboxDenied("a child may not have contacts 'any' when its parent has a list");
    const own = new Set(mine.contacts.map(nameToId));
    for (const c of sandbox.contacts) {
      const id = nameToId(c);
      if (id !== parent.id && !own.has(id)) throw sandboxDenied(`a child may not contact ${c}: its parent may not`);
    }
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

interface PendingSpawn {
  count: number;
  asked: Partial<BudgetSpec>;
  records: NodeRecord[];
  now: number;
  resolve(): void;
  reject(e: unknown): void;
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
   */
  async spawn(from: NodeId, parent: NodeRecord | undefined, raw: unknown, count: number, keys?: Bodies['spawn']['keys']): Promise<SpawnedNode[]> {
    if (!Number.isInteger(count) || count < 1 || count > MAX_BATCH) throw new KeynodeError('ERR_BAD_POLICY', `spawn count must be an integer from 1 to ${MAX_BATCH}`);
    if (keys !== undefined && (!Array.isArray(keys) || keys.length !== count)) throw new KeynodeError('ERR_BAD_POLICY', 'spawn `keys` must have one entry per node');
    const spec = checkSpawnSpec(parent ? inherit(raw, parent) : raw, this.#rt.limits);
    if (parent) checkNarrower(parent, spec.sandbox, spec.lifetime);
    const ancestors = parent ? [...parent.ancestors, parent.id] : [from];
    if (ancestors.length > this.#rt.options.maxDepth) throw new KeynodeError('ERR_BUDGET_EXHAUSTED', `spawn trees are at most ${this.#rt.options.maxDepth} deep`);

    const pairs: KeyPair[] = [];
    for (let i = 0; i < count; i++) {
      const k = keys?.[i];
      if (k !== undefined && !(k && k.seed instanceof Uint8Array && k.seed.length === 32)) throw new KeynodeError('ERR_BAD_POLICY', 'each spawn key is a 32-byte seed');
      pairs.push(k ? keyPairFromSeed(k.seed) : generateKeyPair());
    }
    const ids = pairs.map((kp) => idFromPublicKey(kp.publicKey));
    if (keys) {
      // A client-chosen key must name a node nobody is yet: not another in this batch, not a principal.
      if (new Set(ids).size !== ids.length) throw new KeynodeError('ERR_BAD_POLICY', 'spawn keys repeat within the batch');
      for (const id of ids) {
        if (id === from || id === this.#rt.operator || ancestors.includes(id) || (await this.#rt.isLocal(id)) || (await this.#rt.budgets.limitsOf(id))) {
          throw new KeynodeError('ERR_BAD_POLICY', `a spawn key names ${id}, which is already a node or a principal here`);
        }
      }
    }

    // Bindings are per child (a grant names its holder), so resolve them before taking the budget lock.
    const records: NodeRecord[] = [];
    const now = Date.now();
    for (const [i, kp] of pairs.entries()) {
      const id = ids[i]!;
      const grants = keys?.[i]?.grants ?? {};
      const capabilities: Record<string, BoundCall> = {};
      for (const [name, call] of Object.entries(spec.sandbox.capabilities)) {
        const bound = await this.#bind(from, parent, id, name, { ...call, grant: call.grant ?? grants[name] }, true);
        capabilities[name] = bound!;
      }
      let lifetime = spec.lifetime;
      if (lifetime.kind === 'leased') {
        const check = await this.#bind(from, parent, id, LEASE_GRANT, { ...lifetime.check, grant: lifetime.check.grant ?? grants[LEASE_GRANT] }, false);
        lifetime = { ...lifetime, check: check ?? lifetime.check };
      }
      const rec: NodeRecord = { id, parent: from, ancestors, lifetime, sandbox: { ...spec.sandbox, capabilities }, acl: spec.acl, budget: { maxNodes: 0, maxAwake: 0, memoryMB: 0 }, createdAt: now };
      if (lifetime.kind === 'ephemeral') rec.boot = this.#rt.bootId;
      else rec.sealedKey = this.#rt.keyring.seal(id, kp.seed);
      records.push(rec);
    }

    await new Promise<void>((resolve, reject) => this.#enqueue(from, parent, { count, asked: spec.budget, records, now, resolve, reject }));
    for (const [i, rec] of records.entries()) {
      if (rec.lifetime.kind === 'ephemeral') this.#rt.ephemeralKeys.set(rec.id, pairs[i]!.seed);
      this.#lifetimes.afterSpawn(rec, now, parent !== undefined);
    }
    return records.map((rec, i) => ({ id: rec.id, url: this.#rt.urlOf(rec.id), secretKey: pairs[i]!.seed }));
  }

  /**
   * Group commit: spawns by one spawner are counted against its budget one after another, but written to the
   * store together, so concurrent spawns cost one LevelDB batch, not one each.
   */
  #enqueue(from: NodeId, parent: NodeRecord | undefined, spawn: PendingSpawn): void {
    let group = this.#waiting.get(from);
    if (group) return void group.push(spawn);
    this.#waiting.set(from, (group = [spawn]));
    const budgets = this.#rt.budgets;
    void budgets.locked(from, async () => {
      this.#waiting.delete(from); // later spawns form the next group
      if (this.#rt.destroying.has(from)) {
        // Its destroy lists its children after taking this lock: a child committed now would outlive it.
        const gone = new KeynodeError('ERR_NODE_DESTROYED', `node ${from} is being destroyed and spawns nothing more`);
        for (const s of group) s.reject(gone);
        return;
      }
      const limits = parent ? parent.budget : await budgets.limitsOf(from);
      const record = await budgets.holderRecord(from);
      const txn = this.#rt.store.txn();
      const accepted: PendingSpawn[] = [];
      for (const s of group) {
        let budget: BudgetSpec;
        try {
          budget = budgets.carve(from, limits, s.count, s.asked, record);
        } catch (e) {
          s.reject(e);
          continue;
        }
        for (const rec of s.records) {
          rec.budget = budget;
          txn.putNode(rec);
          this.#lifetimes.onSpawn(rec, txn, s.now);
        }
        accepted.push(s);
      }
      if (!accepted.length) return;
      txn.put('b', from, encode(record));
      try {
        await txn.commit();
      } catch (e) {
        for (const s of accepted) s.reject(e);
        return;
      }
      for (const s of accepted) s.resolve();
    }).catch((e: unknown) => {
      for (const s of group) s.reject(e);
    });
  }

  /**
   * Binds `call` on its target for `holder`: a grant the client signed, or one this container signs because
   * the spawner can sign as the target (it is the target, or its ancestor), or, for a node spawner, one of
   * its own capabilities passed down. Otherwise a capability is refused; a lease check stays unbound and
   * the target's ACL decides.
   */
  async #bind(from: NodeId, parent: NodeRecord | undefined, holder: NodeId, name: string, call: BoundCall, required: boolean): Promise<BoundCall | undefined> {
    const target = resolveNode(call.node).id;
    const bound = (grant: Uint8Array): BoundCall => ({ node: call.node, fn: call.fn, grant, ...(call.args ? { args: call.args } : {}) });
    if (call.grant) {
      if (!verifyGrant(target, holder, name, call.fn, call.grant, call.args)) throw new KeynodeError('ERR_ACCESS_DENIED', `the grant for ${name} is not a signature by ${target} for this node, function and arguments`);
      return bound(call.grant);
    }
    const targetRec = await this.#rt.find(target);
    if (targetRec && (targetRec.id === from || targetRec.ancestors.includes(from))) {
      return bound(signBytes(this.#rt.keyOf(targetRec, this.#rt.supervisor.get(target)), grantMessage(target, holder, name, call.fn, call.args)));
    }
    if (parent) {
      const sameArgs = (a?: Uint8Array) => Buffer.compare(Buffer.from(a ?? [0x90]), Buffer.from(call.args ?? [0x90])) === 0;
      for (const [ownName, own] of Object.entries(parent.sandbox.capabilities)) {
        if (resolveNode(own.node).id === target && own.fn === call.fn && sameArgs(own.args) && own.grant) {
          return { node: own.node, fn: own.fn, grant: own.grant, grantName: own.grantName ?? ownName, as: own.as ?? parent.id, ...(own.args ? { args: own.args } : {}) };
        }
      }
    }
    if (!required) return undefined;
    throw new KeynodeError('ERR_ACCESS_DENIED', `capability ${name}: a spawner may bind only nodes it can sign for (itself or nodes it spawned) or capabilities it holds; ${from} cannot sign for ${target}`);
  }

  /** A parent widens or narrows its child's ACL and sandbox (not its capabilities, which are bound at spawn). */
  async update(from: NodeId, id: NodeId, body: { acl?: unknown; sandbox?: unknown }): Promise<NodeRecord> {
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
      if (parentRec) checkNarrower(parentRec, next.sandbox);
    }
    if (body.acl !== undefined) next.acl = checkSpawnSpec({ lifetime: { kind: 'root' }, acl: body.acl }, this.#rt.limits).acl;
    // Written only if the node still exists: an update must never bring back a node destroyed meanwhile.
    if (this.#rt.destroying.has(id) || !(await this.#rt.store.getNode(id))) throw new KeynodeError('ERR_NODE_DESTROYED', `node ${id} was destroyed`);
    await this.#rt.store.txn().put('n', id, encode(next)).commit();
    this.#rt.supervisor.refresh(next);
    return next;
  }
}
