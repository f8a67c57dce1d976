/**
 * @module container/budgets
 * The budget tree. The operator holds the container's capacity; it grants budgets to client principals;
 * every spawner carves its children's `maxNodes` out of what it has left, and gets it back when they are
 * destroyed. `maxAwake` and `memoryMB` are ceilings checked on wake along the node's whole chain (itself,
 * its ancestors, the top principal, the operator), counted in memory over awake nodes only: sleeping
 * nodes count against `maxNodes` alone. `storageMB` is a ceiling on the same chain too, counted on disk
 * (see policies/storage): a child shares its ancestors' room unless given less.
 */
import { decode, encode, KeynodeError, STORAGE_MB, storageBytes, type BudgetSpec, type NodeId } from '../../protocol/index.js';
import { ownUsageKey, usageKey, type NodeRecord, type StorageAccount, type Store, type Txn } from '../../store/index.js';

/** What the store keeps per budget holder: principals' granted limits and every holder's node count. */
export interface HolderRecord {
  limits?: BudgetSpec;
  usedNodes: number;
}

export interface BudgetReport {
  principal: NodeId;
  limits: BudgetSpec;
  /** `storageBytes` exactly, `storageMB` the same in MiB: what the holder's subtree stores. */
  used: { nodes: number; awake: number; memoryMB: number; storageMB: number; storageBytes: number };
}

export interface ChainLink {
  id: NodeId;
  limits: BudgetSpec;
}

function exhausted(message: string): KeynodeError {
  return new KeynodeError('ERR_BUDGET_EXHAUSTED', message);
}

export class Budgets {
  readonly #store: Store;
  readonly #operator: NodeId;
  readonly #capacity: BudgetSpec;
  readonly #node: (id: NodeId) => Promise<NodeRecord | undefined>;
  readonly #awake = new Map<NodeId, { count: number; mem: number }>();
  readonly #locks = new Map<NodeId, Promise<unknown>>();
  /** Granted principals' limits (a few per tenant, not per node). */
  readonly #grants = new Map<NodeId, BudgetSpec>();

  constructor(store: Store, operator: NodeId, capacity: BudgetSpec, node: (id: NodeId) => Promise<NodeRecord | undefined>) {
    this.#store = store;
    this.#operator = operator;
    this.#capacity = capacity;
    this.#node = node;
  }

  /** Runs `f` alone for this holder: spawns, destroys and grants that change its node count never interleave. */
  locked<T>(holder: NodeId, f: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(holder) ?? Promise.resolve();
    const run = prev.then(f, f);
    const tail = run.then(() => undefined, () => undefined);
    this.#locks.set(holder, tail);
    void tail.then(() => {
      if (this.#locks.get(holder) === tail) this.#locks.delete(holder);
    });
    return run;
  }

  async #holder(id: NodeId): Promise<HolderRecord> {
    return (await this.#stored(id)) ?? { usedNodes: 0 };
  }

  async #stored(id: NodeId): Promise<HolderRecord | undefined> {
    const v = await this.#store.sub('b').get(id);
    return v ? (decode(v) as HolderRecord) : undefined;
  }

  /** A holder's limits: the capacity for the operator, a grant for a principal, the record for a node. */
  async limitsOf(id: NodeId): Promise<BudgetSpec | undefined> {
    if (id === this.#operator) return this.#capacity;
    const rec = await this.#node(id);
    if (rec) return rec.budget;
    const grant = (await this.#holder(id)).limits;
    // A grant made before storageMB existed is bounded by the capacity alone, and says so.
    return grant && grant.storageMB === undefined ? { ...grant, storageMB: this.#capacity.storageMB } : grant;
  }

  /** A holder's stored record (its node count), to carve from and then write back in one batch. */
  holderRecord(holder: NodeId): Promise<HolderRecord> {
    return this.#holder(holder);
  }

  /**
   * Checks and counts a spawn of `count` children against `record` (inside `locked(holder)`; the caller writes
   * the record back). Fills the child's budget from the holder's. Over-asking throws and changes nothing.
   */
  carve(holder: NodeId, limits: BudgetSpec | undefined, count: number, asked: Partial<BudgetSpec>, record: HolderRecord): BudgetSpec {
    if (!limits) throw exhausted(`principal ${holder} has no budget on this container; the operator grants one (keynode grant)`);
    const child: BudgetSpec = { maxNodes: asked.maxNodes ?? 0, maxAwake: asked.maxAwake ?? limits.maxAwake, memoryMB: asked.memoryMB ?? limits.memoryMB, storageMB: asked.storageMB ?? limits.storageMB };
    if (child.maxAwake > limits.maxAwake || child.memoryMB > limits.memoryMB) {
      throw exhausted(`a child may not have more than its spawner: asked maxAwake ${child.maxAwake} and memoryMB ${child.memoryMB}, the spawner has ${limits.maxAwake} and ${limits.memoryMB}`);
    }
    // A record older than storageMB has none: its child gets no limit of its own either (the chain still applies).
    if (child.storageMB === undefined) delete (child as Partial<BudgetSpec>).storageMB;
    else if (storageBytes(child.storageMB) > storageBytes(limits.storageMB)) {
      throw exhausted(`a child may not have more than its spawner: asked storageMB ${child.storageMB}, the spawner has ${limits.storageMB}`);
    }
    const need = count * (1 + child.maxNodes);
    const left = limits.maxNodes - record.usedNodes;
    if (need > left) throw exhausted(`spawning ${count} node(s) with maxNodes ${child.maxNodes} needs ${need} of ${holder}'s budget; ${left} left of ${limits.maxNodes}`);
    record.usedNodes += need;
    return child;
  }

  /**
   * Where a destroyed node's share returns: the nearest holder that still exists (its parent, unless that is
   * gone too). Shares of the node's own surviving (non-Linked) children stay charged there.
   */
  async creditHolder(rec: NodeRecord): Promise<NodeId | undefined> {
    for (const holder of [rec.parent, ...[...rec.ancestors].reverse()]) {
      if (holder === this.#operator || (await this.#node(holder)) || (await this.#holder(holder)).limits) return holder;
    }
    // No holder of its chain is here: it moved here from another container, whose import the operator's
    // capacity paid for (container/migration), so that is where its share returns.
    return this.#operator;
  }

  /**
   * Adds the release to `txn`; call inside `locked(holder)` with `holder` from `creditHolder(rec)`. What the
   * node stored itself goes back to every holder above it; what its surviving children store stays counted
   * there, as their own later writes and deletes will be. Returns whether the node never held a budget record
   * here: it never spawned here (every spawn writes its spawner's record; records move with their nodes) and
   * holds no grant here. Only then may its ID one day be freed (store/tombstones.ts). A child it placed on
   * another member is charged there; one that moves here later makes its tombstone permanent (the importer).
   */
  async release(rec: NodeRecord, holder: NodeId | undefined, txn: Txn): Promise<boolean> {
    const above = (await this.chain(rec)).slice(1).map((l) => usageKey(l.id));
    txn.uncount(ownUsageKey(rec.id), above, [ownUsageKey(rec.id), usageKey(rec.id)]);
    const stored = await this.#stored(rec.id);
    const own = stored ?? { usedNodes: 0 };
    txn.del('b', rec.id);
    if (holder !== undefined) {
      const share = 1 + rec.budget.maxNodes - own.usedNodes;
      const record = await this.#holder(holder);
      record.usedNodes = Math.max(0, record.usedNodes - share);
      txn.put('b', holder, encode(record));
    }
    return stored === undefined;
  }

  /** Operator only: gives `principal` a budget carved from the capacity (replacing any earlier grant). */
  async grant(principal: NodeId, asked: Partial<BudgetSpec>): Promise<BudgetReport> {
    if (principal === this.#operator) throw new KeynodeError('ERR_BAD_POLICY', 'the operator already holds the whole capacity');
    if (asked.maxNodes === undefined || asked.maxAwake === undefined || asked.memoryMB === undefined) {
      // A grant with maxAwake 0 would let a principal spawn nodes that can never wake: say all three.
      throw new KeynodeError('ERR_BAD_POLICY', 'a grant names all of maxNodes, maxAwake and memoryMB (storageMB is optional)');
    }
    // Like a child's, a grant's storageMB defaults to its parent's, here the capacity: the tenant is bounded
    // only by what the container has left, unless the operator gives it less.
    const limits: BudgetSpec = { maxNodes: asked.maxNodes, maxAwake: asked.maxAwake, memoryMB: asked.memoryMB, storageMB: asked.storageMB ?? this.#capacity.storageMB };
    if (limits.maxAwake > this.#capacity.maxAwake || limits.memoryMB > this.#capacity.memoryMB || limits.storageMB > this.#capacity.storageMB) {
      throw exhausted(`a grant may not exceed the container's capacity (maxAwake ${this.#capacity.maxAwake}, memoryMB ${this.#capacity.memoryMB}, storageMB ${this.#capacity.storageMB})`);
    }
    await this.locked(this.#operator, () =>
      this.locked(principal, async () => {
        const root = await this.#holder(this.#operator);
        const holder = await this.#holder(principal);
        if (limits.maxNodes < holder.usedNodes) throw exhausted(`principal ${principal} already uses ${holder.usedNodes} nodes; a grant cannot go below that`);
        const delta = limits.maxNodes - (holder.limits?.maxNodes ?? 0);
        if (delta > this.#capacity.maxNodes - root.usedNodes) throw exhausted(`the container has ${this.#capacity.maxNodes - root.usedNodes} nodes of capacity left`);
        root.usedNodes += delta;
        holder.limits = limits;
        const t = this.#store.txn();
        t.put('b', this.#operator, encode(root)).put('b', principal, encode(holder));
        await t.commit();
        this.#grants.set(principal, limits);
      }),
    );
    return this.report(principal);
  }

  async report(principal: NodeId): Promise<BudgetReport> {
    // A principal without a grant has a budget of zero in every dimension: a fact to report, not a failure.
    const limits = (await this.limitsOf(principal)) ?? (Object.fromEntries(Object.keys(this.#capacity).map((k) => [k, 0])) as unknown as BudgetSpec);
    const awake = this.#awake.get(principal) ?? { count: 0, mem: 0 };
    const [stored] = await this.#store.counters([usageKey(principal)]);
    return {
      principal,
      limits,
      used: { nodes: (await this.#holder(principal)).usedNodes, awake: awake.count, memoryMB: awake.mem, storageMB: stored! / STORAGE_MB, storageBytes: stored! },
    };
  }

  /** The holders a node's wake (and every commit it makes) counts against, nearest first. */
  async chain(rec: NodeRecord): Promise<ChainLink[]> {
    const ids = [rec.id, ...[...rec.ancestors].reverse()];
    if (!ids.includes(this.#operator)) ids.push(this.#operator);
    // The top of every chain is a principal, never a node: its grant comes from memory, not two misses and a read.
    const top = rec.ancestors[0];
    const all = await Promise.all(ids.map((id) => (id === rec.id ? rec.budget : id === top ? this.#grantOf(id) : this.limitsOf(id))));
    const links: ChainLink[] = [];
    for (const [i, id] of ids.entries()) {
      const limits = all[i];
      if (limits) links.push({ id, limits }); // an ancestor destroyed since no longer limits anyone
    }
    return links;
  }

  /** A principal's limits (the capacity for the operator), kept in memory once read: grant() replaces them. */
  async #grantOf(id: NodeId): Promise<BudgetSpec | undefined> {
    if (id === this.#operator) return this.#capacity;
    const known = this.#grants.get(id);
    if (known) return known;
    const limits = await this.limitsOf(id);
    if (limits && !this.#grants.has(id)) this.#grants.set(id, limits);
    return limits;
  }

  /**
   * The storage counters a node's bytes count against, with their ceilings: its own (no ceiling), then every
   * holder of its chain (itself, its ancestors, the top principal, the operator).
   */
  async storageAccount(rec: NodeRecord): Promise<StorageAccount> {
    const chain = await this.chain(rec);
    const counters = [{ key: ownUsageKey(rec.id), max: Infinity }, ...chain.map(({ id, limits }) => ({ key: usageKey(id), max: storageBytes(limits.storageMB) }))];
    return { id: rec.id, parent: rec.parent, counters };
  }

  /**
   * Reserves one awake slot and memory along the chain. Returns the memory granted (the request, or less
   * if less is left but at least `minMB`), or the ID of the first holder that has no room.
   */
  tryReserve(chain: ChainLink[], requestedMB: number, minMB: number): { grantedMB: number } | { blocker: NodeId } {
    let granted = requestedMB;
    for (const { id, limits } of chain) {
      const used = this.#awake.get(id) ?? { count: 0, mem: 0 };
      if (used.count + 1 > limits.maxAwake) return { blocker: id };
      granted = Math.min(granted, limits.memoryMB - used.mem);
      if (granted < minMB) return { blocker: id };
    }
    for (const { id } of chain) {
      const used = this.#awake.get(id) ?? { count: 0, mem: 0 };
      this.#awake.set(id, { count: used.count + 1, mem: used.mem + granted });
    }
    return { grantedMB: granted };
  }

  /** Awake nodes and their granted memory counted against this holder now. */
  awakeUse(id: NodeId): { count: number; mem: number } {
    return this.#awake.get(id) ?? { count: 0, mem: 0 };
  }

  unreserve(chain: NodeId[], mb: number): void {
    for (const id of chain) {
      const used = this.#awake.get(id);
      if (!used) continue;
      if (used.count <= 1) this.#awake.delete(id);
      else this.#awake.set(id, { count: used.count - 1, mem: used.mem - mb });
    }
  }
}
