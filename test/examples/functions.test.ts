import { describe, expect, it } from 'vitest';
import { itFailsWithoutAContainer, runExample } from '../helpers/examples.js';

const example = () => runExample('functions');

describe('example: functions', () => {
  it('uploads functions by content hash, executes them by ID, shows their logs, isolates tenants and keeps uploads across a restart', async () => {
    const { exitCode, stdout, stderr } = await example();
    expect(exitCode, `${stdout}\n${stderr}`).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines.at(-1)).toBe('ok: functions');

    // The ID is the sha256 of the source, so it is the same on every run.
    const uploaded = lines.find((l) => l.startsWith('acme uploaded word-count: '))!;
    const id = uploaded.slice('acme uploaded word-count: '.length);
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const short = `${id.slice(0, 12)}…`;

    expect(lines).toContain(`acme executed ${short}: 4`);
    expect(lines).toContainEqual(expect.stringMatching(/^globex executed [0-9a-f]{12}…: 17\.75$/));
    expect(lines).toContain(`logs of ${short}: ["counted 4 words"]`);

    expect(lines).toContain("globex executes acme's function on acme's node: refused, ERR_ACCESS_DENIED");
    expect(lines).toContain("globex reads acme's function list: refused, ERR_ACCESS_DENIED");
    expect(lines).toContain(`globex executes acme's function ID on its own node: refused, ERR_USER (NO_SUCH_FUNCTION: no function ${short} here)`);
    expect(lines).toContain("globex's code reaches for acme's node from its own: refused, ERR_SANDBOX");

    expect(lines).toContain('container restarted');
    expect(lines).toContain(`acme executed ${short} after the restart: 5`);
    expect(lines).toContain(`logs of ${short} after the restart: ["counted 4 words","counted 5 words"]`);
  });

  itFailsWithoutAContainer('functions');
});
