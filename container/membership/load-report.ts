/**
 * @module container/membership/load-report
 * This container's answer to `load`: its own load, the asker's room in its budget here, and the members it
 * knows. Cheap by design (counters in memory and one budget record read), since every member asks it every
 * `fleetRefreshMs` and fleet clients ask it before placing.
 */
import type { LoadReport, MemberView, NodeId } from '../../protocol/index.js';
import type { Budgets } from '../policies/budgets.js';
import type { Runtime } from '../runtime.js';

export interface LoadSource {
  id: NodeId;
  url: string;
  runtime: Runtime;
  budgets: Budgets;
  capacity: { maxNodes: number; maxAwake: number; memoryMB: number };
  members(): MemberView[];
}

export async function loadReport(s: LoadSource, asker: NodeId): Promise<LoadReport> {
  const { awake, active, queued } = s.runtime.stats();
  const root = await s.budgets.report(s.id);
  const report: LoadReport = {
    containerId: s.id,
    url: s.url,
    awake: awake!,
    maxAwake: s.capacity.maxAwake,
    active: active!,
    queued: queued!,
    // Clamped: a grant may go above a capacity lowered since, and the report must stay within its own bounds.
    memoryMB: Math.min(Math.max(0, Math.round(s.budgets.awakeUse(s.id).mem)), s.capacity.memoryMB),
    maxMemoryMB: s.capacity.memoryMB,
    nodesLeft: Math.max(0, s.capacity.maxNodes - root.used.nodes),
    members: s.members(),
  };
  report.awake = Math.min(report.awake, report.maxAwake);
  const mine = asker === s.id ? root : await s.budgets.report(asker);
  if (mine.limits.maxNodes > 0 || mine.used.nodes > 0) {
    report.room = { maxNodes: mine.limits.maxNodes, nodes: mine.used.nodes, maxAwake: mine.limits.maxAwake, awake: mine.used.awake };
  }
  return report;
}
