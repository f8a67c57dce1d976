/**
 * @module container/node-requests
 * What a node's code asks of the container through ctx, and the commit of its writes. The worker is
 * untrusted, so every sandbox rule is enforced here again, whatever the worker already checked.
 */
import { encode, KeynodeError, NodeRef, resolveNode, type WorkerRequest, type Write } from '../protocol/index.js';
import { contactAdmits } from './policies/contacts.js';
import { placeChild } from './policies/child-placement.js';
import { destroyElsewhere, spawnElsewhere } from './policies/child-elsewhere.js';
import type { AwakeNode } from './supervisor/awake-node.js';
import type { LifetimePolicy } from './policies/lifetime-policy.js';
import type { Runtime } from './runtime.js';
import type { Spawner } from './policies/spawner.js';
import { writtenBytes } from './policies/storage.js';

function sandboxError(what: 'refs' | 'write'): KeynodeError {
  return what === 'refs'
    ? new KeynodeError('ERR_SANDBOX', "this node's sandbox grants no refs (sandbox.refs is 'none')")
    : new KeynodeError('ERR_SANDBOX', "this node's sandbox does not allow writes (sandbox.refs is not 'readwrite')");
}

export class NodeRequests {
  readonly #rt: Runtime;
  readonly #spawner: Spawner;
  readonly #lifetimes: LifetimePolicy;

  constructor(runtime: Runtime, spawner: Spawner, lifetimes: LifetimePolicy) {
    this.#rt = runtime;
    this.#spawner = spawner;
    this.#lifetimes = lifetimes;
  }

  async handle(node: AwakeNode, req: WorkerRequest): Promise<unknown> {
    const rt = this.#rt;
    const { sandbox } = node.rec;
    const running = node.running!;
    switch (req.op) {
      case 'ref.get':
        if (sandbox.refs === 'none') throw sandboxError('refs');
        return (await rt.store.getRef(node.id, req.name)) ?? null;
      case 'index.get':
        if (sandbox.refs === 'none') throw sandboxError('refs');
        return (await rt.store.getIndex(node.id, req.name, req.key)) ?? null;
      case 'index.entries':
        if (sandbox.refs === 'none') throw sandboxError('refs');
        // One reply is bounded like any frame to a worker: a page of 20,000 values of a MiB each must not be
        // read into the container's memory.
        return rt.store.indexEntries(node.id, req.name, req.prefix ?? '', req.limit ?? 1000, rt.options.maxBodyBytes);
      case 'at': {
        const { id, url } = resolveNode(req.node);
        // A node elsewhere is not looked up here (known absent, it costs no store read either).
        const local = await rt.isLocal(id, url);
        const target = local ? await rt.find(id) : undefined;
        // Its own descendants are always in reach; anything else must be in sandbox.contacts.
        if (!target?.ancestors.includes(node.id)) this.#checkContact(node, id, url, local);
        return rt.callAs({ from: node.rec, target: req.node, fn: req.fn, args: req.args, deadline: running.deadline, chain: [...(running.job.chain ?? []), node.id], local });
      }
      case 'cap': {
        const cap = Object.hasOwn(sandbox.capabilities, req.name) ? sandbox.capabilities[req.name] : undefined;
        if (!cap?.grant) throw new KeynodeError('ERR_SANDBOX', `no capability ${req.name} is bound to this node`);
        const signer = cap.as ? await rt.lookup(cap.as) : node.rec;
        return rt.callAs({
          from: signer,
          target: cap.node,
          fn: cap.fn,
          args: req.args,
          deadline: running.deadline,
          chain: [...(running.job.chain ?? []), node.id],
          grant: { name: cap.grantName ?? req.name, grant: cap.grant, ...(cap.args ? { args: cap.args } : {}) },
        });
      }
      case 'spawn': {
        const { spec, elsewhere } = await placeChild(req.spec, rt);
        if (elsewhere !== undefined) return encode(new NodeRef(await spawnElsewhere(rt, this.#spawner, node, spec, elsewhere, running.deadline)));
        const [child] = await this.#spawner.spawn(node.id, node.rec, spec, 1);
        return encode(new NodeRef(child!.url));
      }
      case 'destroy': {
        const { id, url } = resolveNode(req.node);
        if (url !== undefined && !(await rt.isLocal(id, url))) {
          await destroyElsewhere(rt, node, id, url, running.deadline);
          return null;
        }
        const rec = await rt.lookup(id);
        if (!rec.ancestors.includes(node.id)) throw new KeynodeError('ERR_ACCESS_DENIED', `node ${node.id} may destroy only nodes it spawned (directly or not)`);
        await rt.destroy(id, `destroyed by ${node.id}`);
        return null;
      }
      case 'destroySelf':
        // The code runs with its sender's authority: only a sender who could destroy the node may end it.
        if (running.job.from !== node.id && !node.rec.ancestors.includes(running.job.from)) {
          throw new KeynodeError('ERR_ACCESS_DENIED', `ctx.destroySelf() needs an eval sent by an ancestor of node ${node.id}`);
        }
        node.selfDestruct = running.evalId;
        return null;
    }
  }

  /**
   * A contact admits a node, and for a node elsewhere also the container it lives on: a listed URL never lets
   * a call (signed as this node, carrying its data) go to another host that claims the same node ID.
   */
  #checkContact(node: AwakeNode, id: string, url: string | undefined, local: boolean): void {
    const contacts = node.rec.sandbox.contacts;
    if (contacts === 'any') return;
    if (contactAdmits(contacts, id, url, local)) return;
    throw new KeynodeError('ERR_SANDBOX', `node ${node.id} may not contact ${url ?? id}: it is not in sandbox.contacts`);
  }

  /** Commits an eval's writes in one batch, with the lifetime bookkeeping the eval causes. */
  async commit(node: AwakeNode, writes: readonly Write[]): Promise<void> {
    if (node.selfDestruct !== undefined) {
      node.selfDestruct = undefined;
      // The eval's result still reaches its caller; the node ends right after, its writes discarded.
      queueMicrotask(() => void this.#rt.destroy(node.id, 'destroyed itself').catch(() => {}));
      return;
    }
    const { sandbox } = node.rec;
    if (!writes.length) {
      // Nothing written: no held-children bookkeeping, no storage charge and no store batch, only a Resetting
      // node's activity.
      const txn = this.#rt.store.txn();
      this.#lifetimes.onEval(node, txn);
      if (txn.ops.length) await txn.commit();
      return;
    }
    if (sandbox.refs !== 'readwrite') throw sandboxError('write');
    for (const w of writes) {
      if (w.op !== 'del' && w.value.length > sandbox.maxMessageBytes) throw new KeynodeError('ERR_TOO_LARGE', `a value of ${w.value.length} bytes exceeds sandbox.maxMessageBytes`);
    }
    // Keys and names count as much as values: a hundred thousand empty entries under long keys are not free.
    const total = writtenBytes(node.id, writes);
    if (total > 4 * sandbox.maxMessageBytes) throw new KeynodeError('ERR_TOO_LARGE', `one eval wrote ${total} bytes (keys, names and values); the limit is 4 × sandbox.maxMessageBytes`);
    const txn = this.#rt.store.txn().writes(node.id, writes);
    await this.#lifetimes.held.index(node.id, writes, txn);
    this.#lifetimes.onEval(node, txn);
    if (writes.length) await this.#rt.storage.charge(node.rec, writes, txn);
    try {
      await txn.commit();
    } catch (e) {
      if ((e as KeynodeError).code === 'ERR_BUDGET_EXHAUSTED') this.#rt.storage.onRefused('commit');
      throw e;
    }
  }
}
