/**
 * @module container/operations
 * One handler per signed message type. The envelope is already verified and fresh; each handler checks
 * its body's shape, then who may do it, then does it.
 */
import { checkBudget, isNodeId, KeynodeError, MAX_CHAIN, type Bodies, type Envelope, type NodeId } from '../../protocol/index.js';
import { ownUsageKey, usageKey } from '../../store/index.js';
import { checkAdminister, checkDestroy } from '../policies/access.js';
import type { LifetimePolicy } from '../policies/lifetime-policy.js';
import type { Runtime } from '../runtime.js';
import type { Spawner } from '../policies/spawner.js';
import type { CodeCache } from './code-cache.js';
import { openChosenKeys, spawnReply } from './sealed-keys.js';
import { BackupReader } from '../../store/index.js';
import type { Importer } from '../migration/importer.js';
import type { Mover } from '../migration/mover.js';
import { movedError } from '../runtime.js';

/** Moves, drains and fleet lookups (container/migration), wired by the container. */
export interface MigrationOps {
  mover: Mover;
  importer: Importer;
}

/** The node a message is about, for the messages that name one: where a redirect would send it. */
function nodeOf(env: Envelope): NodeId | undefined {
  if (env.type === 'eval' || env.type === 'destroy') return env.to;
  if (env.type === 'describe' || env.type === 'logs' || env.type === 'update' || env.type === 'move') {
    const node = (env.body as { node?: unknown }).node;
    return isNodeId(node) ? node : undefined;
  }
  return undefined;
}

function bad(what: string): never {
  throw new KeynodeError('ERR_BAD_MESSAGE', `malformed body: ${what}`);
}

function nodeField(v: unknown, name: string): NodeId {
  if (!isNodeId(v)) bad(`\`${name}\` must be a node ID`);
  return v;
}

function principalField(v: unknown): NodeId {
  if (!isNodeId(v)) bad('`principal` must be a principal ID (52 lowercase base32 characters, as Identity.id)');
  return v;
}

function optionalInt(v: unknown, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) bad(`\`${name}\` must be an integer from ${min} to ${max}`);
  return v;
}

export class Operations {
  readonly #rt: Runtime;
  readonly #spawner: Spawner;
  readonly #lifetimes: LifetimePolicy;
  readonly #containerId: NodeId;
  readonly #code: CodeCache;
  readonly #backups: BackupReader;
  /** Answers `load` (container/membership/load-report.ts); set once the container knows its fleet. */
  loadReport: ((asker: NodeId) => Promise<unknown>) | undefined;

  constructor(runtime: Runtime, spawner: Spawner, lifetimes: LifetimePolicy, containerId: NodeId, code: CodeCache) {
    this.#rt = runtime;
    this.#backups = new BackupReader(runtime.store);
    this.#spawner = spawner;
    this.#lifetimes = lifetimes;
    this.#containerId = containerId;
    this.#code = code;
  }

  /** The function of an eval: its source (kept by hash for next time), or the source of the hash it names. */
  #function(fn: unknown, h: unknown): { fn: string; hash: string } {
    if (fn !== undefined) {
      if (typeof fn !== 'string') bad('`fn` must be function source');
      return { fn, hash: this.#code.add(fn) };
    }
    if (typeof h !== 'string' || !/^[0-9a-f]{64}$/.test(h)) bad('an eval carries `fn` (source) or `h` (its SHA-256, 64 lowercase hex digits)');
    return { fn: this.#code.get(h), hash: h };
  }

  migration: MigrationOps | undefined;

  /**
   * `pathId` is the node the HTTP request was addressed to, or undefined for the container itself. A node
   * unknown here is looked for: a move of it prepared here activates (when its source committed), or a peer
   * has it, and the answer is a redirect to it (authenticated like any reply). Nothing ran here either way.
   */
  async handle(env: Envelope, pathId: NodeId | undefined): Promise<unknown> {
    try {
      return await this.#handle(env, pathId);
    } catch (e) {
      const id = e instanceof KeynodeError && e.code === 'ERR_NODE_NOT_FOUND' ? nodeOf(env) : undefined;
      if (id === undefined || !this.migration) throw e;
      if (await this.migration.importer.arrived(id)) return this.#handle(env, pathId);
      const url = await this.#rt.locate(id);
      if (url === undefined) throw e;
      throw movedError(id, url);
    }
  }

  async #handle(env: Envelope, pathId: NodeId | undefined): Promise<unknown> {
    const toNode = env.type === 'eval' || env.type === 'destroy';
    if (toNode ? env.to !== pathId : pathId !== undefined || env.to !== this.#containerId) {
      throw new KeynodeError('ERR_BAD_MESSAGE', toNode ? `a ${env.type} message must be POSTed to the URL of the node it names` : `a ${env.type} message goes to the container (POST /, to = ${this.#containerId})`);
    }
    switch (env.type) {
      case 'eval': {
        const { fn: source, h, args, cap, chain } = env.body as Bodies['eval'];
        if (!(args instanceof Uint8Array)) bad('`args` must be MessagePack bytes');
        if (chain !== undefined && (!Array.isArray(chain) || chain.length > MAX_CHAIN || !chain.every(isNodeId))) bad(`\`chain\` must be a list of at most ${MAX_CHAIN} node IDs`);
        const { fn, hash } = this.#function(source, h);
        if (cap !== undefined) {
          if (typeof cap !== 'object' || cap === null) bad('`cap` must be { name, grant }');
          return this.#rt.evalGranted(env.to, env.from, fn, args, cap, { hash, chain });
        }
        return this.#rt.evalOn(env.to, env.from, fn, args, { hash, chain });
      }
      case 'destroy': {
        const rec = await this.#rt.lookup(env.to);
        checkDestroy(rec, env.from);
        await this.#rt.destroy(env.to, `destroyed by ${env.from}`);
        return null;
      }
      case 'spawn': {
        if (this.migration?.mover.draining) throw new KeynodeError('ERR_UNAVAILABLE', 'this container is being drained: its nodes are moving to its peers; spawn on another container of the fleet');
        const { count, keys: sealedKeys, seeds, sealTo, ...spec } = env.body as Bodies['spawn'];
        const n = optionalInt(count, 'count', 1, 10_000) ?? (Array.isArray(sealedKeys) ? sealedKeys.length : 1);
        const box = this.#rt.keyring.box;
        // Signed by a node here (a client holds its spawned nodes' keys): the node spawns, with every rule
        // ctx.spawn obeys (its sandbox, its budget, narrowing) — never as a free-standing principal.
        const asNode = await this.#rt.find(env.from);
        if (seeds !== undefined) {
          // Opening the box of chosen seeds is real work: a spawner whose budget cannot hold this many nodes
          // is refused first (the spawn checks again, exactly, under its budget lock).
          const budgets = this.#rt.budgets;
          budgets.carve(env.from, asNode ? asNode.budget : await budgets.limitsOf(env.from), n, {}, { ...(await budgets.holderRecord(env.from)) });
        }
        const keys = openChosenKeys(sealedKeys, seeds, box);
        return spawnReply(await this.#spawner.spawn(env.from, asNode, spec, n, keys), sealTo, box);
      }
      case 'update': {
        const body = env.body as Bodies['update'];
        const rec = await this.#spawner.update(env.from, nodeField(body.node, 'node'), body);
        return this.#rt.info(rec);
      }
      case 'grant': {
        this.#operatorOnly(env.from);
        const body = env.body as Bodies['grant'];
        return this.#rt.budgets.grant(principalField(body.principal), checkBudget(body.budget));
      }
      case 'budget': {
        const principal = (env.body as Bodies['budget']).principal === undefined ? env.from : principalField((env.body as Bodies['budget']).principal);
        if (principal !== env.from) this.#operatorOnly(env.from);
        return this.#rt.budgets.report(principal);
      }
      case 'renew': {
        const { nodes } = env.body as Bodies['renew'];
        if (!Array.isArray(nodes) || nodes.length > 100_000 || !nodes.every(isNodeId)) bad('`nodes` must be a list of node IDs');
        return { gone: this.#lifetimes.renew(env.from, nodes) };
      }
      case 'describe': {
        const id = nodeField((env.body as Bodies['describe']).node, 'node');
        const rec = await this.#rt.lookup(id);
        checkAdminister(rec, env.from, this.#rt.operator);
        const [storageBytes, ownStorageBytes] = await this.#rt.storage.use([usageKey(id), ownUsageKey(id)]);
        return { ...this.#rt.info(rec), storageBytes, ownStorageBytes };
      }
      case 'logs': {
        const body = env.body as Bodies['logs'] & { wait?: unknown };
        const id = nodeField(body.node, 'node');
        const after = optionalInt(body.after, 'after', 0, Number.MAX_SAFE_INTEGER) ?? 0;
        const limit = optionalInt(body.limit, 'limit', 1, 10_000) ?? 1000;
        const wait = optionalInt(body.wait, 'wait', 0, 60_000) ?? 0;
        const rec = await this.#rt.lookup(id);
        checkAdminister(rec, env.from, this.#rt.operator);
        let lines = await this.#rt.logs.read(id, after, limit);
        if (lines.length === 0 && wait > 0) {
          await this.#rt.logs.waitForLines(id, wait);
          lines = await this.#rt.logs.read(id, after, limit);
        }
        return { lines };
      }
      case 'list': {
        this.#operatorOnly(env.from);
        const body = env.body as Bodies['list'];
        const after = body.after === undefined ? undefined : nodeField(body.after, 'after');
        const limit = optionalInt(body.limit, 'limit', 1, 10_000) ?? 1000;
        const nodes = await this.#rt.list(after, limit);
        const used = await this.#rt.storage.use(nodes.map((n) => usageKey(n.id)));
        return { nodes: nodes.map((n, i) => ({ ...n, storageBytes: used[i] })) };
      }
      case 'stats': {
        this.#operatorOnly(env.from);
        const [storageBytes] = await this.#rt.storage.use([usageKey(this.#rt.operator)]);
        return { ...this.#rt.stats(), storageBytes };
      }
      case 'backup': {
        this.#operatorOnly(env.from);
        const { session } = env.body as Bodies['backup'];
        if (session !== undefined && (typeof session !== 'string' || !/^[0-9a-f]{32}$/.test(session))) bad('`session` must be the session a previous backup page named');
        return this.#backups.page(session);
      }
      case 'forceDestroy': {
        this.#operatorOnly(env.from);
        const id = nodeField((env.body as Bodies['forceDestroy']).node, 'node');
        await this.#rt.destroy(id, 'destroyed by the operator');
        return null;
      }
      case 'move': {
        const { node, to } = env.body as Bodies['move'];
        if (typeof to !== 'string' || to.length > 2048) bad('`to` must be the URL of the container to move to');
        return this.#migration().mover.move(nodeField(node, 'node'), to, env.from);
      }
      case 'drain': {
        this.#operatorOnly(env.from);
        const concurrency = optionalInt((env.body as Bodies['drain']).concurrency, 'concurrency', 1, 64);
        return this.#migration().mover.drain(env.from, concurrency);
      }
      case 'locate': {
        // One read: the node's record, or where it went. Never asks on: a lookup cannot go round the fleet.
        const id = nodeField((env.body as Bodies['locate']).node, 'node');
        if (await this.#rt.store.getNode(id)) return { url: this.#rt.urlOf(id) };
        const fwd = await this.#rt.store.getForward(id);
        return fwd ? { url: fwd.url, move: fwd.move } : {};
      }
      case 'moveChunk':
        return this.#migration().importer.chunk(env.from, env.body as Bodies['moveChunk']);
      case 'movePrepare':
        return this.#migration().importer.prepare(env.from, env.body as Bodies['movePrepare']);
      case 'moveActivate':
        return this.#migration().importer.activate(env.from, env.body as Bodies['moveActivate']);
      case 'load': {
        if (!this.loadReport) throw new KeynodeError('ERR_UNAVAILABLE', 'this container is starting; retry shortly');
        return this.loadReport(env.from);
      }
      case 'hello':
        throw new KeynodeError('ERR_BAD_MESSAGE', 'a hello is answered by the edge, never here');
      default: {
        const unknown: never = env.type;
        throw new KeynodeError('ERR_BAD_MESSAGE', `message type ${String(unknown)} is not handled by this container`);
      }
    }
  }

  #migration(): MigrationOps {
    if (!this.migration) throw new KeynodeError('ERR_UNAVAILABLE', 'this container does not move nodes');
    return this.migration;
  }

  #operatorOnly(from: NodeId): void {
    if (from !== this.#rt.operator) throw new KeynodeError('ERR_ACCESS_DENIED', 'only the operator may do that');
  }
}
