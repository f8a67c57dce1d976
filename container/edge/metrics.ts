/**
 * @module container/metrics
 * Prometheus metrics (prom-client), one registry per container so several can share a process (tests).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'type' | 'code'>;
  readonly #latency: Histogram<'type'>;
  readonly wakes: Counter<'source'>;
  readonly kills: Counter<'reason'>;
  readonly storageRefusals: Counter<'what'>;

  constructor(
    awake: () => number,
    queued: () => number,
    fleet: () => { spares: number; blanks: number; poolTarget: number },
    storage: { used: () => Promise<number>; capacity: number },
  ) {
    const registers = [this.registry];
    this.#requests = new Counter({ name: 'keynode_requests_total', help: 'Signed messages handled, by type and result code', labelNames: ['type', 'code'], registers });
    this.#latency = new Histogram({
      name: 'keynode_request_seconds',
      help: 'Time to handle a signed message',
      labelNames: ['type'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    });
    this.wakes = new Counter({ name: 'keynode_wakes_total', help: 'Nodes woken, by where the worker came from: spare, steal, blank or new', labelNames: ['source'], registers });
    this.kills = new Counter({ name: 'keynode_worker_kills_total', help: 'Workers killed or lost, by reason', labelNames: ['reason'], registers });
    new Gauge({ name: 'keynode_awake_nodes', help: 'Nodes with a process', registers, collect() { this.set(awake()); } });
    new Gauge({ name: 'keynode_queued_evals', help: 'Evals waiting for their node', registers, collect() { this.set(queued()); } });
    new Gauge({ name: 'keynode_spare_workers', help: 'Scrubbed worker processes waiting for a node of their tenant', registers, collect() { this.set(fleet().spares); } });
    new Gauge({ name: 'keynode_blank_workers', help: 'Pre-started blank worker processes ready for any wake', registers, collect() { this.set(fleet().blanks); } });
    new Gauge({ name: 'keynode_pool_target', help: 'Blank workers the adaptive pool aims to keep, from the recent rate of wakes that found no reusable worker', registers, collect() { this.set(fleet().poolTarget); } });
    this.storageRefusals = new Counter({ name: 'keynode_storage_refusals_total', help: 'Commits refused (and batches of log lines dropped) because a storage budget was full', labelNames: ['what'], registers });
    new Gauge({ name: 'keynode_storage_bytes', help: "Bytes stored by all nodes (refs, indexes and logs), counted against the capacity's storageMB", registers, async collect() { this.set(await storage.used()); } });
    new Gauge({ name: 'keynode_storage_capacity_bytes', help: 'The capacity storageMB, in bytes', registers, collect() { this.set(storage.capacity); } });
    // prom-client's default metrics already carry their own `process_` / `nodejs_` part: the prefix is only
    // ours, or names come out as keynode_process_process_cpu_seconds_total.
    collectDefaultMetrics({ register: this.registry, prefix: 'keynode_' });
  }

  /** Called for every signed message handled (the dashboard's rates, latencies and errors come from here). */
  observer: ((type: string, code: string, ms: number) => void) | undefined;
  /** Labelled children by type and code: finding one from a label object costs more than the count itself. */
  readonly #children = new Map<string, { count: { inc(): void }; time: { observe(v: number): void } }>();

  request(type: string, code: string, ms: number): void {
    const key = `${type}\u0000${code}`;
    let c = this.#children.get(key);
    if (!c) {
      // Types and codes are closed sets (unknown types are counted as 'unknown'), so this stays small.
      c = { count: this.#requests.labels(type, code), time: this.#latency.labels(type) };
      this.#children.set(key, c);
    }
    c.count.inc();
    c.time.observe(ms / 1000);
    this.observer?.(type, code, ms);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
