import { describe, expect, it } from 'vitest';
import { itFailsWithoutAContainer, runExample } from '../helpers/examples.js';

const example = () => runExample('trading');

describe('example: trading', () => {
  it('runs every strategy in its own node; the hostile one fails alone, with a clear code, on every tick', async () => {
    const { exitCode, stdout, stderr } = await example();
    expect(exitCode, `${stdout}\n${stderr}`).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines.at(-1)).toBe('ok: trading');

    expect(lines).toContain("mallory's client on alice's node: ERR_ACCESS_DENIED");
    const ticks = lines.filter((l) => l.startsWith('tick '));
    expect(ticks).toHaveLength(6);
    for (const line of ticks) {
      // Alice and Bob answer with a decision on every tick; Mallory never does.
      expect(line).toMatch(/^tick \d price \d+\.\d\d: alice (BUY|SELL|HOLD), bob (BUY|SELL|HOLD), mallory ERR_/);
    }
    // Each attack fails with its own code: no `process`, no other customer's node, no endless loop.
    expect(ticks[0]).toMatch(/^tick 1 price 10\.00: alice HOLD, bob HOLD, mallory ERR_USER \(TypeError: .*'env'/);
    expect(ticks[1]).toBe('tick 2 price 10.40: alice SELL, bob HOLD, mallory ERR_SANDBOX');
    expect(ticks[2]).toBe('tick 3 price 9.70: alice BUY, bob HOLD, mallory ERR_EVAL_TIMEOUT');
    expect(ticks[5]).toBe('tick 6 price 10.20: alice HOLD, bob HOLD, mallory ERR_EVAL_TIMEOUT');

    expect(lines).toContain('bob updated his strategy: SELL at 10.60');
    expect(lines).toContain("alice's history: [10.9,9.4,10.2]");
    expect(lines).toContain('every hostile attempt failed alone; alice and bob answered on every tick');
  });

  itFailsWithoutAContainer('trading');
});
