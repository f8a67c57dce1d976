import { describe, expect, it } from 'vitest';
import { itFailsWithoutAContainer, runExample } from '../helpers/examples.js';

const example = () => runExample('checker');

/** The lines of one round, from its `round N:` header up to the next header. */
function round(lines: string[], n: number): string[] {
  const start = lines.findIndex((l) => l.startsWith(`round ${n}: `));
  expect(start, `round ${n} printed`).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((l, i) => i > start && !l.startsWith('  '));
  return lines.slice(start + 1, end);
}

describe('example: checker', () => {
  it('runs checks with exactly three capabilities on a schedule; green/red per round; alarms drained by another program', async () => {
    const { exitCode, stdout, stderr } = await example();
    expect(exitCode, `${stdout}\n${stderr}`).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines.at(-1)).toBe('ok: checker');
    expect(lines).toContain('4 checks, each in its own node with capabilities: dataset, ok, fail');

    const peekSalaries = "peek-salaries: red (errored: ERR_USER (NOT_DECLARED: this check did not declare dataset 'salaries'))";
    const peekAround = 'peek-around: red (errored: ERR_SANDBOX)';

    const r1 = round(lines, 1);
    expect(r1).toContain('  few-missing-emails: green (2 users without email)');
    expect(r1).toContain('  orders-have-totals: green (every order has a total)');
    expect(r1).toContain(`  ${peekSalaries}`);
    expect(r1).toContain(`  ${peekAround}`);
    expect(r1.filter((l) => l.startsWith('  alarm drained')).sort()).toEqual([
      "  alarm drained by on-call: [peek-around] errored: ERR_SANDBOX",
      "  alarm drained by on-call: [peek-salaries] errored: ERR_USER (NOT_DECLARED: this check did not declare dataset 'salaries')",
    ]);

    const r2 = round(lines, 2);
    expect(r2).toContain('  few-missing-emails: red (there should be fewer than 3 users without email, found 4)');
    expect(r2).toContain('  orders-have-totals: red (orders without a total: o3)');
    expect(r2).toContain('  alarm drained by on-call: [few-missing-emails] there should be fewer than 3 users without email, found 4');
    expect(r2).toContain('  alarm drained by on-call: [orders-have-totals] orders without a total: o3');

    const r3 = round(lines, 3);
    expect(r3).toContain('  few-missing-emails: green (0 users without email)');
    expect(r3).toContain('  orders-have-totals: red (orders without a total: o3)');
    expect(r3.filter((l) => l.includes('[few-missing-emails]'))).toEqual([]);

    expect(lines).toContain('on-call on datasets: ERR_ACCESS_DENIED');
    expect(lines).toContain('on-call on a check: ERR_ACCESS_DENIED');
    expect(lines).toContain(
      'history: {"few-missing-emails":["green","red","green"],"orders-have-totals":["green","red","red"],"peek-around":["red","red","red"],"peek-salaries":["red","red","red"]}',
    );
  });

  itFailsWithoutAContainer('checker');
});
