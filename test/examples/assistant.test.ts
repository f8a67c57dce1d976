import { describe, expect, it } from 'vitest';
import { itFailsWithoutAContainer, runExample } from '../helpers/examples.js';

const example = () => runExample('assistant');

describe('example: assistant (seed 004)', () => {
  it('keeps a per-user Root node through crashes and a restart, rolls back failed requests, processes retries once and queues notifications per session', async () => {
    const { exitCode, stdout, stderr } = await example();
    expect(exitCode, `${stdout}\n${stderr}`).toBe(0);
    const lines = stdout.split('\n');
    expect(lines.at(-1)).toBe('ok: assistant');
    expect(stdout).toMatch(/^assistant: http:\/\/127\.0\.0\.1:\d+\/[a-z2-7]{52}$/m);
    expect(lines).toContain('phone tops up 100: credit 100');

    // A lost response, then a retry with the same key: answered from memory, the toaster bought once.
    expect(lines).toContain('phone orders a toaster, loses the response: ERR_ABORTED');
    expect(lines).toContain('phone retries with the same key: credit 70, orders [toaster], replayed true');

    // A request that changes state and then throws leaves the state as it was.
    expect(lines).toContain('laptop orders a TV: ERR_USER RangeError: not enough credit: ordered TV; state: credit 70, orders [toaster]');

    // A worker killed mid-request commits nothing: the retry runs it once, the next retry is a replay.
    expect(stdout).toMatch(/^phone orders a kettle; worker \d+ killed mid-request: ERR_WORKER_CRASHED$/m);
    expect(lines).toContain('phone retries: credit 50, orders [toaster,kettle], replayed false; retries again: replayed true');

    // A crash between requests and a container restart: state and remembered keys survive.
    expect(stdout).toMatch(/^worker \d+ killed between requests$/m);
    expect(lines).toContain('container restarted');
    expect(lines).toContain('after the crashes and the restart: credit 50, orders [toaster,kettle]');
    expect(lines).toContain('a late retry of the toaster order: replayed true, answered as then (credit 70); credit now 50');

    // Notifications: one queue per session, drained by reading; nothing from the failed or crashed requests.
    expect(lines).toContain('phone notifications: ["credit +100 (from phone)","ordered toaster (from phone)","ordered kettle (from phone)"]');
    expect(lines).toContain('phone reads again: []');
    expect(lines).toContain('laptop notifications: ["ordered toaster (from phone)","ordered kettle (from phone)"]');
  });

  itFailsWithoutAContainer('assistant');
});
