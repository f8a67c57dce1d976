/**
 * @module container/edge/dashboard/live
 * The figures the dashboard streams, sampled once a second while a page is open: awake and sleeping
 * counts, wakes and evals per second, eval latency percentiles, errors by code, memory against capacity
 * and the worker pool. Costs nothing per node: counters the container keeps anyway, plus a bounded count
 * of the node directory every few seconds (exact up to COUNT_CAP nodes, estimated past it).
 */
import type { NodeId } from '../../../protocol/index.js';
import type { Runtime } from '../../runtime.js';

export interface Sample {
  t: number;
  awake: number;
  active: number;
  queued: number;
  /** Every node on the container (awake or not); `nodesExact` false when estimated. */
  nodes: number;
  nodesExact: boolean;
  wakesPerSec: number;
  evalsPerSec: number;
  /** Over the last second's evals; null when there were none. */
  p50: number | null;
  p99: number | null;
  memory: { grantedMB: number; capacityMB: number; containerRssMB: number };
  pool: { spares: number; blanks: number; poolTarget: number; wakesFrom: Record<string, number> };
}

const HISTORY = 300;
const MAX_LATENCIES = 20_000;
/** Node records counted one by one at most; past it the total is estimated from how far the count got. */
const COUNT_CAP = 50_000;
const COUNT_EVERY_MS = 10_000;

/** base32 digits in LevelDB's (byte) order: '2'..'7' sort before 'a'..'z'. */
const ORDER = '234567abcdefghijklmnopqrstuvwxyz';

/**
 * Node IDs are public keys, spread evenly over the key space: if the first `n` IDs in order reach the point
 * `f` (0..1) of that space, there are about `n / f` in all.
 */
export function estimateFromPosition(n: number, lastId: string): number {
  let f = 0;
  let scale = 1;
  for (const ch of lastId.slice(0, 10)) {
    scale /= 32;
    f += Math.max(0, ORDER.indexOf(ch)) * scale;
  }
  return f > 0 ? Math.round(n / f) : n;
}

export interface LiveDeps {
  runtime: Runtime;
  operator: NodeId;
  capacityMB: number;
  fleet(): { spares: number; blanks: number; poolTarget?: number; counts: Record<string, number> };
}

export class Live {
  readonly #deps: LiveDeps;
  readonly history: Sample[] = [];
  readonly errors: Record<string, number> = {};
  #evals = 0;
  #latencies: number[] = [];
  #seen = 0;
  #lastWakes = 0;
  #lastAt = 0;
  #nodes = { count: 0, exact: true, at: 0 };
  #counting = false;
  #timer: NodeJS.Timeout | undefined;
  #listeners = new Set<(s: Sample) => void>();

  constructor(deps: LiveDeps) {
    this.#deps = deps;
  }

  /** Every signed message the container handled (Metrics.observer). */
  observe(type: string, code: string, ms: number): void {
    if (code !== 'ok') this.errors[code] = (this.errors[code] ?? 0) + 1;
    if (type !== 'eval' || code !== 'ok') return;
    this.#evals++;
    // Reservoir sampling keeps the percentiles honest at any rate with bounded memory.
    this.#seen++;
    if (this.#latencies.length < MAX_LATENCIES) this.#latencies.push(ms);
    else {
      const j = Math.floor(Math.random() * this.#seen);
      if (j < MAX_LATENCIES) this.#latencies[j] = ms;
    }
  }

  /** Streams a sample a second to `f` until the returned function is called. */
  subscribe(f: (s: Sample) => void): () => void {
    this.#listeners.add(f);
    if (!this.#timer) {
      this.#lastAt = performance.now();
      this.#lastWakes = this.#deps.runtime.supervisor.wakes;
      this.#evals = 0;
      this.#timer = setInterval(() => void this.#tick(), 1000).unref();
      void this.#count();
    }
    return () => {
      this.#listeners.delete(f);
      if (this.#listeners.size === 0) this.close();
    };
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#listeners.clear();
  }

  async #tick(): Promise<void> {
    const { runtime } = this.#deps;
    const now = performance.now();
    const dt = Math.max(0.001, (now - this.#lastAt) / 1000);
    this.#lastAt = now;
    const wakes = runtime.supervisor.wakes;
    let awake = 0;
    let active = 0;
    let queued = 0;
    for (const n of runtime.supervisor.nodes()) {
      if (n.worker) awake++;
      if (n.running) active++;
      queued += n.queue.length;
    }
    const lat = this.#latencies.sort((a, b) => a - b);
    const pick = (p: number) => (lat.length ? round(lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)]!) : null);
    const fleet = this.#deps.fleet();
    const sample: Sample = {
      t: Date.now(),
      awake,
      active,
      queued,
      nodes: Math.max(this.#nodes.count, awake),
      nodesExact: this.#nodes.exact,
      wakesPerSec: round((wakes - this.#lastWakes) / dt),
      evalsPerSec: round(this.#evals / dt),
      p50: pick(50),
      p99: pick(99),
      memory: { grantedMB: runtime.budgets.awakeUse(this.#deps.operator).mem, capacityMB: this.#deps.capacityMB, containerRssMB: Math.round(process.memoryUsage.rss() / 1048576) },
      pool: { spares: fleet.spares, blanks: fleet.blanks, poolTarget: fleet.poolTarget ?? 0, wakesFrom: fleet.counts },
    };
    this.#lastWakes = wakes;
    this.#evals = 0;
    this.#latencies = [];
    this.#seen = 0;
    this.history.push(sample);
    if (this.history.length > HISTORY) this.history.shift();
    // A small directory is counted every other second (cheap); a big one every ten.
    const every = this.#nodes.exact && this.#nodes.count < 5000 ? 2000 : COUNT_EVERY_MS;
    if (Date.now() - this.#nodes.at > every) void this.#count();
    for (const f of this.#listeners) f(sample);
  }

  /** Counts node records, up to COUNT_CAP; past it, estimates (node IDs are uniform over the key space). */
  async #count(): Promise<void> {
    if (this.#counting) return;
    this.#counting = true;
    try {
      let n = 0;
      let last = '';
      for await (const key of this.#deps.runtime.store.sub('n').keys({ limit: COUNT_CAP })) {
        n++;
        last = key;
      }
      this.#nodes = n < COUNT_CAP ? { count: n, exact: true, at: Date.now() } : { count: estimateFromPosition(n, last), exact: false, at: Date.now() };
    } catch {
      // The store is closing: keep the last count.
    } finally {
      this.#counting = false;
    }
  }

  /** Count again soon (a node was spawned or destroyed from the dashboard's point of view). */
  recount(): void {
    this.#nodes.at = 0;
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
