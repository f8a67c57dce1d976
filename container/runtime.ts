/**
 * @module container/runtime
 * The operations on nodes, whoever asks: a client over HTTP, a node through ctx, a peer container.
 * lookup → policy checks → supervisor → worker → store, and back.
 */
import type { KeyObject } from 'node:crypto';
import {
  checkSpawnSpec, encode, formatNodeUrl, generateKeyPair, idFromPublicKey, keyPairFromSeed, KeynodeError, NodeRef, resolveNode, sealEnvelope, signBytes,
  type NodeId, type NodeInfo, type PolicyLimits, type SpawnSpec, type WorkerRequest, type Write,
} from '../protocol/index.js';
import type { NodeRecord, Store } from '../store/index.js';
import { checkEval } from './access.js';
import type { AwakeNode } from './awake-node.js';
import type { ContainerOptions } from './config.js';
import type { Keyring } from './keyring.js';
import type { LogBook } from './logbook.js';
import type { RemotePeers } from './remote.js';
import type { Supervisor } from './supervisor.js';

export interface SpawnedNode {
  id: NodeId;
  url: string;
  /** The node's private key, for the spawner only (a client proves it when destroying). */
  secretKey: Uint8Array;
}

export interface EvalOptions {
  deadline?: number;
  chain?: NodeId[];
}

const MAX_BATCH_SPAWN = 10_000;

export class Runtime {
  readonly bootId = Date.now();
  readonly limits: PolicyLimits;
  readonly #o: ContainerOptions;
  readonly #store: Store;
  readonly #keyring: Keyring;
  readonly #logs: LogBook;
  readonly #remote: RemotePeers;
  readonly #origin: string;
  supervisor!: Supervisor;
  readonly #loading = new Map<NodeId, Promise<NodeRecord>>();
  readonly #destroying = new Set<NodeId>();
  /** Seeds of Ephemeral nodes: their keys are never written to disk. */
  readonly #ephemeralKeys = new Map<NodeId, Uint8Array>();

  constructor(o: ContainerOptions, store: Store, keyring: Keyring, logs: LogBook, remote: RemotePeers, origin: string) {
    this.#o = o;
    this.#store = store;
    this.#keyring = keyring;
    this.#logs = logs;
    this.#remote = remote;
    this.#origin = origin;
    this.limits = {
      defaultMemoryMB: o.memoryMB,
      maxMemoryMB: o.maxMemoryMB,
      defaultTimeoutMs: o.evalTimeoutMs,
      maxTimeoutMs: o.maxEvalTimeoutMs,
      defaultMaxMessageBytes: o.maxMessageBytes,
      maxMessageBytes: o.maxBodyBytes,
    };
  }

  get operator(): NodeId {
    return this.#keyring.operator.id;
  }

  urlOf(id: NodeId): string {
    return formatNodeUrl(this.#origin, id);
  }

  // --- lookup ----------------------------------------------------------------------------------

  /** The node's record: from the status map if awake, else one store read shared by concurrent callers. */
  lookup(id: NodeId): Promise<NodeRecord> {
    if (this.#destroying.has(id)) return Promise.reject(destroyedError(id));
    const awake = this.supervisor.get(id);
    if (awake && !awake.destroyed) return Promise.resolve(awake.rec);
    let p = this.#loading.get(id);
    if (!p) {
      p = this.#load(id);
      this.#loading.set(id, p);
      const done = () => this.#loading.delete(id);
      p.then(done, done);
    }
    return p;
  }

  async #load(id: NodeId): Promise<NodeRecord> {
    const rec = await this.#store.getNode(id);
    if (rec && !this.#destroying.has(id)) return rec;
    if (rec || (await this.#store.getTombstone(id))) throw destroyedError(id);
    throw new KeynodeError('ERR_NODE_NOT_FOUND', `no node ${id} on this container`);
  }

  /** The node's private key, for signing on its behalf. Held in memory only while needed. */
  async keyOf(rec: NodeRecord, awake?: AwakeNode): Promise<KeyObject> {
    if (awake?.key) return awake.key;
    const seed = rec.sealedKey ? this.#keyring.unseal(rec.id, rec.sealedKey) : this.#ephemeralKeys.get(rec.id);
    if (!seed) throw destroyedError(rec.id);
    const key = keyPairFromSeed(seed).privateKey;
    if (awake) awake.key = key;
    return key;
  }

  // --- eval ------------------------------------------------------------------------------------

  async evalOn(id: NodeId, from: NodeId, fn: string, args: Uint8Array, options: EvalOptions = {}): Promise<Uint8Array> {
    const rec = await this.lookup(id);
    checkEval(rec, from);
    if (fn.length + args.length > rec.sandbox.maxMessageBytes) {
      throw new KeynodeError('ERR_TOO_LARGE', `the eval is ${fn.length + args.length} bytes; node ${id} accepts at most ${rec.sandbox.maxMessageBytes} (sandbox.maxMessageBytes)`);
    }
    return new Promise((resolve, reject) => this.supervisor.submit(rec, { fn, args, from, deadline: options.deadline, chain: options.chain, resolve, reject }));
  }

  /** `ctx.at` from a node: routed locally when the target lives here, else signed and sent to its container. */
  async callFromNode(node: AwakeNode, target: string, fn: string, args: Uint8Array): Promise<Uint8Array> {
    const { id, url } = resolveNode(target);
    const running = node.running!;
    const chain = [...(running.job.chain ?? []), node.id];
    if (chain.includes(id)) throw new KeynodeError('ERR_CYCLE', `node ${id} is waiting on this call chain already; a node runs one eval at a time, so calling back into it would deadlock`);
    const local = url === undefined || url.startsWith(`${this.#origin}/`) || (await this.#isLocal(id));
    if (!local) await this.#checkContact(node, id, url);
    if (local) {
      const rec = await this.lookup(id);
      if (!rec.ancestors.includes(node.id)) await this.#checkContact(node, id, url);
      return this.evalOn(id, node.id, fn, args, { deadline: running.deadline, chain });
    }
    const key = await this.keyOf(node.rec, node);
    const envelope = sealEnvelope({ id: node.id, sign: (m) => signBytes(key, m) }, 'eval', id, { fn, args });
    const value = await this.#remote.post(url!, envelope, Math.max(1, running.deadline - Date.now()));
    if (!(value instanceof Uint8Array)) throw new KeynodeError('ERR_BAD_MESSAGE', `${url} returned a malformed eval result`);
    return value;
  }

  async #isLocal(id: NodeId): Promise<boolean> {
    if (this.supervisor.get(id)) return true;
    return (await this.#store.getNode(id)) !== undefined || (await this.#store.getTombstone(id)) !== undefined;
  }

  async #checkContact(node: AwakeNode, id: NodeId, url: string | undefined): Promise<void> {
    const contacts = node.rec.sandbox.contacts;
    if (contacts === 'any') return;
    if (contacts.some((c) => c === id || c === url || resolveNode(c).id === id)) return;
    throw new KeynodeError('ERR_SANDBOX', `node ${node.id} may not contact ${url ?? id}: it is not in sandbox.contacts`);
  }

  // --- requests from a node's code ---------------------------------------------------------------

  async handleRequest(node: AwakeNode, req: WorkerRequest): Promise<unknown> {
    const refs = node.rec.sandbox.refs;
    switch (req.op) {
      case 'ref.get':
        if (refs === 'none') throw sandboxError('refs');
        return (await this.#store.getRef(node.id, req.name)) ?? null;
      case 'index.get':
        if (refs === 'none') throw sandboxError('refs');
        return (await this.#store.getIndex(node.id, req.name, req.key)) ?? null;
      case 'index.entries':
        if (refs === 'none') throw sandboxError('refs');
        return this.#store.indexEntries(node.id, req.name, req.prefix ?? '', req.limit ?? 1000);
      case 'at':
        return this.callFromNode(node, req.node, req.fn, req.args);
      case 'spawn': {
        const [child] = await this.spawn(node.id, node, req.spec, 1);
        return encode(new NodeRef(child!.url));
      }
      case 'destroy': {
        const { id } = resolveNode(req.node);
        const rec = await this.lookup(id);
        if (!rec.ancestors.includes(node.id)) throw new KeynodeError('ERR_ACCESS_DENIED', `node ${node.id} may destroy only nodes it spawned (directly or not)`);
        await this.destroy(id, `destroyed by ${node.id}`);
        return null;
      }
      case 'destroySelf':
        node.selfDestruct = true;
        return null;
      case 'cap':
        throw new KeynodeError('ERR_SANDBOX', `no capability ${req.name} is bound to this node`);
    }
  }

  /** Commits an eval's writes in one batch. The worker is untrusted, so the sandbox is checked again here. */
  async commit(node: AwakeNode, writes: Write[]): Promise<void> {
    if (node.selfDestruct) {
      queueMicrotask(() => void this.destroy(node.id, 'destroyed itself').catch(() => {}));
      return;
    }
    if (writes.length === 0) return;
    if (node.rec.sandbox.refs !== 'readwrite') throw sandboxError('write');
    let total = 0;
    for (const w of writes) {
      if (w.op !== 'del') {
        if (w.value.length > node.rec.sandbox.maxMessageBytes) throw new KeynodeError('ERR_TOO_LARGE', `a value of ${w.value.length} bytes exceeds sandbox.maxMessageBytes`);
        total += w.value.length;
      }
    }
    if (total > 4 * node.rec.sandbox.maxMessageBytes) throw new KeynodeError('ERR_TOO_LARGE', `one eval wrote ${total} bytes; the limit is 4 × sandbox.maxMessageBytes`);
    await this.#store.txn().writes(node.id, writes).commit();
  }

  // --- spawn and destroy -----------------------------------------------------------------------

  async spawn(from: NodeId, spawner: AwakeNode | undefined, raw: unknown, count: number): Promise<SpawnedNode[]> {
    if (!Number.isInteger(count) || count < 1 || count > MAX_BATCH_SPAWN) throw new KeynodeError('ERR_BAD_POLICY', `spawn count must be an integer from 1 to ${MAX_BATCH_SPAWN}`);
    const spec = checkSpawnSpec(raw, this.limits);
    this.#authorizeSpawn(from, spawner, spec);
    const ancestors = spawner ? [...spawner.rec.ancestors, spawner.id] : [from];
    if (ancestors.length > this.#o.maxDepth) throw new KeynodeError('ERR_BUDGET_EXHAUSTED', `spawn trees are at most ${this.#o.maxDepth} deep`);
    const now = Date.now();
    const txn = this.#store.txn();
    const out: SpawnedNode[] = [];
    const ephemeral = spec.lifetime.kind === 'ephemeral';
    for (let i = 0; i < count; i++) {
      const kp = generateKeyPair();
      const id = idFromPublicKey(kp.publicKey);
      const rec: NodeRecord = { id, parent: from, ancestors, ...spec, createdAt: now };
      if (ephemeral) {
        rec.boot = this.bootId;
        this.#ephemeralKeys.set(id, kp.seed);
      } else rec.sealedKey = this.#keyring.seal(id, kp.seed);
      txn.putNode(rec);
      out.push({ id, url: this.urlOf(id), secretKey: kp.seed });
    }
    await txn.commit();
    return out;
  }

  #authorizeSpawn(from: NodeId, spawner: AwakeNode | undefined, spec: SpawnSpec): void {
    if (spawner) {
      const allowed = spawner.rec.sandbox.spawn;
      if (allowed === false) throw new KeynodeError('ERR_SANDBOX', `node ${spawner.id} may not spawn (sandbox.spawn is false)`);
      if (!allowed.lifetimes.includes(spec.lifetime.kind)) throw new KeynodeError('ERR_SANDBOX', `node ${spawner.id} may spawn only ${allowed.lifetimes.join(', ')} nodes`);
      return;
    }
    if (from !== this.operator) throw new KeynodeError('ERR_BUDGET_EXHAUSTED', `principal ${from} has no budget on this container; the operator grants one`);
  }

  /** Ends the node: process killed, state deleted, a tombstone left so later messages get ERR_NODE_DESTROYED. */
  async destroy(id: NodeId, reason: string): Promise<void> {
    const rec = await this.lookup(id);
    this.#destroying.add(id);
    try {
      await this.supervisor.terminate(id);
      await this.#store.destroyNode(rec, reason);
      this.#ephemeralKeys.delete(id);
    } finally {
      this.#destroying.delete(id);
    }
  }

  // --- reading ---------------------------------------------------------------------------------

  async describe(id: NodeId): Promise<NodeInfo> {
    const rec = await this.lookup(id);
    return this.info(rec);
  }

  info(rec: NodeRecord): NodeInfo {
    const awake = this.supervisor.get(rec.id);
    const info: NodeInfo = {
      id: rec.id,
      url: this.urlOf(rec.id),
      status: awake && awake.worker ? awake.publicStatus : 'asleep',
      lifetime: rec.lifetime,
      parent: rec.parent,
      sandbox: rec.sandbox,
      acl: rec.acl,
      budget: rec.budget,
      createdAt: rec.createdAt,
    };
    if (awake?.worker) {
      info.pid = awake.worker.pid;
      info.lastActivity = awake.lastActivity;
      info.memoryMB = awake.grantedMB;
      info.uptimeMs = Date.now() - awake.wokenAt;
    }
    return info;
  }

  async list(after: NodeId | undefined, limit: number): Promise<NodeInfo[]> {
    return (await this.#store.listNodes(after, limit)).map((rec) => this.info(rec));
  }

  stats(): Record<string, number> {
    let queued = 0;
    let active = 0;
    for (const n of this.supervisor.nodes()) {
      queued += n.queue.length;
      if (n.running) active++;
    }
    return { awake: this.supervisor.size, active, queued, wakes: this.supervisor.wakes, uptimeMs: Date.now() - this.bootId };
  }

  get logs(): LogBook {
    return this.#logs;
  }

  forgetEphemeralKey(id: NodeId): void {
    this.#ephemeralKeys.delete(id);
  }
}

function destroyedError(id: NodeId): KeynodeError {
  return new KeynodeError('ERR_NODE_DESTROYED', `node ${id} was destroyed`);
}

function sandboxError(what: 'refs' | 'write'): KeynodeError {
  return what === 'refs'
    ? new KeynodeError('ERR_SANDBOX', "this node's sandbox grants no refs (sandbox.refs is 'none')")
    : new KeynodeError('ERR_SANDBOX', "this node's sandbox does not allow writes (sandbox.refs is not 'readwrite')");
}
