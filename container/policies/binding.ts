/**
 * @module container/binding
 * A batch of children's records, their capabilities and lease checks bound to grants: each grant names its
 * holder, so every child needs its own, checked (the client signed it) or signed (the spawner can sign as
 * the target) in bulk on the key mint's threads rather than one by one on the event loop.
 */
import { KeynodeError, LEASE_GRANT, resolveNode, type BoundCall, type NodeId, type SpawnSpec } from '../../protocol/index.js';
import type { NodeRecord } from '../../store/index.js';
import type { Runtime } from '../runtime.js';
import type { GrantCall, MintedKey } from './keygen.js';

/** Records built between turns of the event loop: a batch of 10,000 must not hold it for its whole length. */
export const YIELD_EVERY = 1000;

export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The children's records: `base` with each child's ID and sealed key, and its capabilities and lease check
 * bound for all the children at once. `grantOf(i, name)` is the grant the client signed for child i, if any.
 */
export async function childRecords(rt: Runtime, from: NodeId, parent: NodeRecord | undefined, spec: SpawnSpec, base: NodeRecord, keys: MintedKey[], grantOf: (i: number, name: string) => unknown): Promise<NodeRecord[]> {
  const ids = keys.map((k) => k.id);
  const caps: [string, (BoundCall | undefined)[]][] = [];
  for (const [name, call] of Object.entries(spec.sandbox.capabilities)) {
    caps.push([name, await bindAll(rt, from, parent, ids, name, call, (i) => call.grant ?? grantOf(i, name), true)]);
  }
  const lt = spec.lifetime;
  const checks = lt.kind === 'leased' ? await bindAll(rt, from, parent, ids, LEASE_GRANT, lt.check, (i) => lt.check.grant ?? grantOf(i, LEASE_GRANT), false) : [];
  const records: NodeRecord[] = [];
  for (const [i, key] of keys.entries()) {
    const capabilities: Record<string, BoundCall> = {};
    for (const [name, bound] of caps) capabilities[name] = bound[i]!;
    const lifetime = lt.kind === 'leased' ? { ...lt, check: checks[i] ?? lt.check } : lt;
    const rec: NodeRecord = { ...base, id: key.id, lifetime, sandbox: { ...base.sandbox, capabilities } };
    if (rec.sealedKey) rec.sealedKey = key.sealed;
    records.push(rec);
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await yieldToLoop();
  }
  return records;
}

/**
 * Binds `call` on its target for each holder: a grant the client signed, or one this container signs because
 * the spawner can sign as the target (it is the target, or its ancestor), or, for a node spawner, one of
 * its own capabilities passed down. Otherwise a capability is refused; a lease check stays unbound and
 * the target's ACL decides. Grants are checked and signed in bulk on the mint's threads.
 */
async function bindAll(rt: Runtime, from: NodeId, parent: NodeRecord | undefined, holders: NodeId[], name: string, call: BoundCall, grantOf: (i: number) => unknown, required: boolean): Promise<(BoundCall | undefined)[]> {
  const target = resolveNode(call.node).id;
  const bound = (grant: Uint8Array): BoundCall => ({ node: call.node, fn: call.fn, grant, ...(call.args ? { args: call.args } : {}) });
  const grantCall: GrantCall = { target, name, fn: call.fn, ...(call.args ? { args: call.args } : {}) };
  const mint = rt.keyring.mint;
  const out: (BoundCall | undefined)[] = new Array(holders.length);
  const presented: number[] = [];
  const rest: number[] = [];
  holders.forEach((_, i) => (grantOf(i) ? presented : rest).push(i));
  if (presented.length) {
    const denied = new KeynodeError('ERR_ACCESS_DENIED', `the grant for ${name} is not a signature by ${target} for this node, function and arguments`);
    const grants = presented.map((i) => grantOf(i));
    if (!grants.every((g): g is Uint8Array => g instanceof Uint8Array && g.length === 64)) throw denied;
    const ok = await mint.verifyGrants(from, grantCall, presented.map((i) => holders[i]!), grants);
    if (ok.includes(false)) throw denied;
    presented.forEach((i, k) => (out[i] = bound(grants[k]!)));
  }
  if (!rest.length) return out;
  const targetRec = await rt.find(target);
  if (targetRec && (targetRec.id === from || targetRec.ancestors.includes(from))) {
    const seed = targetRec.sealedKey ? rt.keyring.unseal(targetRec.id, targetRec.sealedKey) : rt.ephemeralKeys.get(targetRec.id);
    if (!seed) throw new KeynodeError('ERR_NODE_DESTROYED', `node ${target} was destroyed`);
    const sigs = await mint.signGrants(from, grantCall, seed, rest.map((i) => holders[i]!));
    rest.forEach((i, k) => (out[i] = bound(sigs[k]!)));
    return out;
  }
  if (parent) {
    const sameArgs = (a?: Uint8Array) => Buffer.compare(Buffer.from(a ?? [0x90]), Buffer.from(call.args ?? [0x90])) === 0;
    for (const [ownName, own] of Object.entries(parent.sandbox.capabilities)) {
      if (resolveNode(own.node).id === target && own.fn === call.fn && sameArgs(own.args) && own.grant) {
        const passed: BoundCall = { node: own.node, fn: own.fn, grant: own.grant, grantName: own.grantName ?? ownName, as: own.as ?? parent.id, ...(own.args ? { args: own.args } : {}) };
        for (const i of rest) out[i] = passed;
        return out;
      }
    }
  }
  if (!required) return out;
  throw new KeynodeError('ERR_ACCESS_DENIED', `capability ${name}: a spawner may bind only nodes it can sign for (itself or nodes it spawned) or capabilities it holds; ${from} cannot sign for ${target}`);
}
