/**
 * @module container/admission
 * Whether a node may wake now: one awake slot and its memory must fit every budget on its chain. When one
 * is full, that budget's least recently used idle node is put to sleep to make room; only when nothing can
 * be freed is the wake refused.
 */
import { KeynodeError } from '../../protocol/index.js';
import type { AwakeNode } from '../supervisor/awake-node.js';
import type { Budgets } from './budgets.js';
import type { Supervisor } from '../supervisor/supervisor.js';

/** V8 will not run in less; a grant below this is no grant. */
const MIN_MB = 16;

export async function admit(node: AwakeNode, budgets: Budgets, supervisor: Supervisor): Promise<number> {
  const chain = await budgets.chain(node.rec);
  const requested = node.rec.sandbox.memoryMB;
  for (;;) {
    const r = budgets.tryReserve(chain, requested, Math.min(requested, MIN_MB));
    if ('grantedMB' in r) {
      node.chain = chain.map((l) => l.id);
      return r.grantedMB;
    }
    const under = (n: AwakeNode) => n !== node && n.wasAwake && n.worker !== undefined && n.chain.includes(r.blocker);
    const [victim] = supervisor.idleByAge(under);
    // A node already on its way to sleep (another wake chose it) frees room too: wait for it.
    const leaving = victim ? undefined : [...supervisor.nodes()].find((n) => n.status === 'stopping' && under(n));
    if (leaving?.worker) {
      await leaving.worker.exited;
      continue;
    }
    if (!victim) {
      throw new KeynodeError('ERR_BUDGET_EXHAUSTED', `no room to wake node ${node.id}: the budget of ${r.blocker} has no awake slot or memory left, and none of its nodes is idle`);
    }
    await supervisor.sleep(victim);
  }
}
