/**
 * @module container/supervisor/memory-watch
 * Reads awake workers' resident memory and kills those past their grant. A worker running an eval is read
 * every poll; an idle one (no user code can run in it) once every IDLE_EVERY polls, spread over the
 * polls, so a thousand awake nodes cost about a thousand small reads a second, not ten thousand.
 */
import type { AwakeNode } from './awake-node.js';

const IDLE_EVERY = 10;

export function watchMemory(nodes: Iterable<AwakeNode>, pollMs: number, overheadMB: number): void {
  const now = Date.now();
  for (const node of nodes) {
    const w = node.worker;
    if (!w) continue;
    const busy = node.running !== undefined || node.settling !== undefined || node.status !== 'idle';
    if (!busy && node.nextMemoryCheck > now) continue;
    // Spread idle reads: each node gets its own phase within the slower period.
    node.nextMemoryCheck = now + pollMs * (IDLE_EVERY - 1) + Math.floor(Math.random() * pollMs);
    const rss = w.rssMB();
    if (rss !== undefined && rss > w.memoryMB + overheadMB) w.kill('ERR_OUT_OF_MEMORY');
  }
}
