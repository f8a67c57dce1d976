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

export interface Target {
  /** 'min': the value should be at least `value`; 'max': at most. */
  kind: 'min' | 'max';
  value: number;
  /** Shown after the number, e.g. "(1M nodes)". */
  note?: string;
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
  const header = ['metric', 'value', 'unit', 'runs', 'min..max', 'target (SPEC §8)', 'value/target'];
  const body = rows.map((r) => {
    const spread = r.perRun.length > 1 ? `${fmt(Math.min(...r.perRun))}..${fmt(Math.max(...r.perRun))}` : '';
    const target = r.target ? `${r.target.kind === 'min' ? '≥' : '≤'} ${fmt(r.target.value)}${r.target.note ? ` ${r.target.note}` : ''}` : '-';
    const ratio = r.target ? `${(r.value / r.target.value).toFixed(2)}${r.target.kind === 'min' ? ' (≥1 ok)' : ' (≤1 ok)'}` : '-';
    return [r.metric, fmt(r.value), r.unit, String(r.runs), spread, target, ratio];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const numeric = new Set([1, 3]);
  const line = (cells: string[]) => cells.map((c, i) => pad(c, widths[i]!, numeric.has(i))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
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
