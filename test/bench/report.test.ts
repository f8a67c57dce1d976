/**
 * `npm run bench` reports in words: each target with its ID (defined, with its source, in the README), MET or
 * NOT MET beside the ratio, and no verdict where the measurement is not of the target's size.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
type Stats = typeof import('../../bench/stats.js');
const { renderTable, target, verdict, TARGETS } = (await import(`${ROOT}dist/bench/stats.js`)) as Stats;

describe('bench report', () => {
  it('says met or not met in words, and gives no verdict for unlike measurements', () => {
    expect(verdict(0.4, target('evalP50'))).toBe('MET, 1.25× better than needed');
    expect(verdict(0.8, target('evalP50'))).toBe('NOT MET: 1.60× the target');
    expect(verdict(15_000, target('spawnMany'))).toBe('NOT MET: 75% of the target');
    expect(verdict(30_000, target('spawnMany'))).toBe('MET, 1.50× better than needed');
    expect(verdict(250, target('sleepersRss', 'extrapolated'))).toBe('MET, 1.20× better than needed (extrapolated)');
    expect(verdict(90, target('sleepersRss', 'measured at 100k nodes; the target is for 10M'))).toBe('no verdict: measured at 100k nodes; the target is for 10M');

    const table = renderTable([
      { metric: 'warm eval latency p50', unit: 'ms', value: 0.8, runs: 3, perRun: [0.7, 0.8, 0.9], target: target('evalP50') },
      { metric: 'container RSS with 100k sleeping nodes', unit: 'MB', value: 90, runs: 1, perRun: [90], target: target('sleepersRss', 'measured at 100k nodes; the target is for 10M') },
      { metric: 'no target here', unit: 'ms', value: 3, runs: 1, perRun: [3] },
    ]);
    expect(table).toMatch(/warm eval latency p50 .* T5: ≤ 0\.500\s+NOT MET: 1\.60× the target/);
    expect(table).toContain('no verdict: measured at 100k nodes; the target is for 10M');
    expect(table).toContain('T5: ≤ 0.500 — warm eval p50, ms');
    expect(table).toContain('T3: ≤ 300 — container RSS with 10,000,000 sleeping nodes, MB');
    expect(table).not.toContain('SPEC');
  });

  it('every target is in the README, with its value and where it comes from', () => {
    const readme = readFileSync(`${ROOT}README.md`, 'utf8');
    const section = readme.slice(readme.indexOf('### Targets'), readme.indexOf('## ', readme.indexOf('### Targets') + 4));
    for (const t of Object.values(TARGETS)) expect(section, t.id).toMatch(new RegExp(`^\\| ${t.id} \\|`, 'm'));
  });
});
