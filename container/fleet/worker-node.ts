/**
 * @module container/worker-node
 * What a worker is told about its node: enough to build `ctx`, and never the key.
 */
import type { WorkerNode } from '../../protocol/index.js';
import type { NodeRecord } from '../../store/index.js';

export function workerNodeOf(rec: NodeRecord, url: string): WorkerNode {
  return {
    id: rec.id,
    url,
    parent: rec.parent,
    refs: rec.sandbox.refs,
    log: rec.sandbox.log,
    capabilities: Object.keys(rec.sandbox.capabilities),
    spawn: rec.sandbox.spawn,
    maxMessageBytes: rec.sandbox.maxMessageBytes,
  };
}
