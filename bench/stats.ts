/**
 * @module bench/stats
 * Small statistics and table helpers for `npm run bench`. Nothing here asserts: benchmarks report.
 */

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile (p in 0..100); NaN for an empty list. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/**
 * The targets `npm run bench` measures against, as the README lists them (Benchmarks › Targets, with where
 * each number comes from): a reader of the output needs nothing but the README to check them.
 */
export const TARGETS = {
  spawnMany: { id: 'T1', kind: 'min', value: 20_000, what: 'spawnMany, nodes/s' },
  spawnSingle: { id: 'T2', kind: 'min', value: 3_000, what: 'single spawn calls, 32 in flight, nodes/s' },
  sleepersRss: { id: 'T3', kind: 'max', value: 300, what: 'container RSS with 10,000,000 sleeping nodes, MB' },
  restart: { id: 'T4', kind: 'max', value: 2_000, what: 'restart with 10,000,000 sleeping nodes → first reply, ms' },
  evalP50: { id: 'T5', kind: 'max', value: 0.5, what: 'warm eval p50, ms' },
  evalP99: { id: 'T6', kind: 'max', value: 2, what: 'warm eval p99, ms' },
  evalThroughput: { id: 'T7', kind: 'min', value: 5_000, what: 'evals/s across 100 awake nodes, 64 in flight' },
  wakeWarm: { id: 'T8', kind: 'max', value: 2, what: 'wake p50 with a spare or pooled worker, ms' },
  wakeCold: { id: 'T9', kind: 'max', value: 150, what: 'wake p50 with no worker to take, ms' },
  wakesSustained: { id: 'T10', kind: 'min', value: 300, what: 'sustained wakes of distinct sleeping nodes, nodes/s' },
  density: { id: 'T11', kind: 'max', value: 12, what: 'proportional memory per awake idle node, 1,000 awake, MB' },
  awakeHeld: { id: 'T11', kind: 'min', value: 1_000, what: '1,000 awake idle nodes held on one host' },
  ctxAtLocal: { id: 'T12', kind: 'max', value: 0.3, what: "ctx.at between two nodes of one container, p50 added to the caller's eval, ms" },
  ctxAtRemote: { id: 'T13', kind: 'max', value: 1, what: "ctx.at across two containers on one machine, p50 added to the caller's eval, ms" },
} as const satisfies Record<string, { id: string; kind: 'min' | 'max'; value: number; what: string }>;

export interface Target {
  /** README › Benchmarks › Targets. */
  id: string;
  /** 'min': the value should be at least `value`; 'max': at most. */
  kind: 'min' | 'max';
  value: number;
  /**
   * 'same': measured as the target is stated; 'extrapolated': computed from a smaller measurement (said in
   * the verdict); any other text: measured differently (it says how), so no verdict is given.
   */
  comparison: string;
}

/** A row's target: `comparison` says whether the measurement matches what the target is stated for. */
export function target(key: keyof typeof TARGETS, comparison = 'same'): Target {
  const t = TARGETS[key];
  return { id: t.id, kind: t.kind, value: t.value, comparison };
}

export interface Row {
  metric: string;
  unit: string;
  /** Median over runs. */
  value: number;
  runs: number;
  /** Each run's value, for the spread column. */
  perRun: number[];
  target?: Target;
}

/** Met or not, in words, with the ratio; or why there is no verdict. */
export function verdict(value: number, t: Target): string {
  if (t.comparison !== 'same' && t.comparison !== 'extrapolated') return `no verdict: ${t.comparison}`;
  const met = t.kind === 'min' ? value >= t.value : value <= t.value;
  const ratio = t.kind === 'min' ? value / t.value : t.value / value;
  const how = met ? (ratio >= 1.005 ? `, ${ratio.toFixed(2)}× better than needed` : '') : `: ${t.kind === 'min' ? `${(100 * ratio).toFixed(0)}% of the target` : `${(value / t.value).toFixed(2)}× the target`}`;
  return `${met ? 'MET' : 'NOT MET'}${how}${t.comparison === 'extrapolated' ? ' (extrapolated)' : ''}`;
}

export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1000) return Math.round(n).toLocaleString('en-US');
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  return n.toFixed(3);
}

function pad(s: string, w: number, right = false): string {
  return right ? s.padStart(w) : s.padEnd(w);
}

export function renderTable(rows: readonly Row[]): string {
  const header = ['metric', 'value', 'unit', 'runs', 'min..max', 'target', 'verdict'];
  const body = rows.map((r) => {
    const spread = r.perRun.length > 1 ? `${fmt(Math.min(...r.perRun))}..${fmt(Math.max(...r.perRun))}` : '';
    const t = r.target;
    const target = t ? `${t.id}: ${t.kind === 'min' ? '≥' : '≤'} ${fmt(t.value)}` : '-';
    return [r.metric, fmt(r.value), r.unit, String(r.runs), spread, target, t ? verdict(r.value, t) : '-'];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const numeric = new Set([1, 3]);
  const line = (cells: string[]) => cells.map((c, i) => pad(c, widths[i]!, numeric.has(i))).join('  ').trimEnd();
  const used = [...new Set(rows.map((r) => r.target?.id).filter((id): id is string => id !== undefined))];
  const legend = Object.values(TARGETS)
    .filter((t, i, all) => used.includes(t.id) && all.findIndex((u) => u.id === t.id) === i)
    .map((t) => `${t.id}: ${t.kind === 'min' ? '≥' : '≤'} ${fmt(t.value)} — ${t.what}`);
  return [
    line(header),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...body.map(line),
    '',
    'targets (README › Benchmarks › Targets says where each comes from):',
    ...legend.map((l) => `  ${l}`),
  ].join('\n');
}

/** Runs `fn` for items 0..total-1 with at most `concurrency` in flight. */
export async function pooled(total: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < total) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, lane));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
