/**
 * @module container/policies/admission
 * Whether a node may wake now: one awake slot and its memory must fit every budget on its chain. When one
 * is full, that budget's least recently used idle node is put to sleep to make room. A node that is on its
 * way out (already going to sleep) or finishing (its result sent, its worker not yet idle) will free room
 * soon: the wake waits for it, as long as that node's own time limit at most. Only when nothing can be
 * freed is the wake refused.
 */
import { KeynodeError } from '../../protocol/index.js';
import type { AwakeNode } from '../supervisor/awake-node.js';
import type { Budgets } from './budgets.js';
import type { Supervisor } from '../supervisor/supervisor.js';

/** V8 will not run in less; a grant below this is no grant. */
const MIN_MB = 16;

/** Going to sleep, or done with its last eval and about to be idle: room that frees itself shortly. */
function leavingSoon(n: AwakeNode): boolean {
  if (n.status === 'stopping') return true;
  if (n.queue.length) return false;
  return n.settling !== undefined || n.status === 'committing';
}

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
    const victim = supervisor.leastRecentlyUsed(under);
    if (victim) {
      await supervisor.sleep(victim);
      continue;
    }
    let soon: AwakeNode | undefined;
    for (const n of supervisor.nodes()) if (under(n) && leavingSoon(n)) soon = n;
    if (!soon) {
      throw new KeynodeError('ERR_BUDGET_EXHAUSTED', `no room to wake node ${node.id}: the budget of ${r.blocker} has no awake slot or memory left, and none of its nodes is idle`);
    }
    // Bounded: a settling node becomes idle or is killed by its eval's timer; a stopping one is released or killed.
    await soon.changed();
  }
}
