import { describe, expect, it } from 'vitest';
import { itFailsWithoutAContainer, runExample } from '../helpers/examples.js';

const example = () => runExample('sharing');

describe('example: sharing (seed 003)', () => {
  it('shares an address through a one-capability node and takes a typed movie list through a write-only one, across two containers', async () => {
    const { exitCode, stdout, stderr } = await example();
    expect(exitCode, `${stdout}\n${stderr}`).toBe(0);
    const lines = stdout.split('\n');
    expect(lines.at(-1)).toBe('ok: sharing');

    // Two containers on two ports; every node is shared as a URL on one of them.
    const home = /^home container: (http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout)?.[1];
    const away = /^away container: (http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout)?.[1];
    expect(home).toBeDefined();
    expect(away).toBeDefined();
    expect(home).not.toBe(away);
    for (const [what, where] of [['your node (home)', home], ["shop's mailer node (away)", away], ['sharing node (home)', home], ["Tom's node (away)", away], ['movie mailbox (home)', home]] as const) {
      expect(stdout).toMatch(new RegExp(`^${what.replace(/[()]/g, '\\$&')}: ${where}/[a-z2-7]{52}$`, 'm'));
    }

    // (a) The shop's node reads the address through the capability, sees the update, and nothing else.
    expect(lines).toContain('mailer prints a label: To: you, 12 Elm Street, Springfield');
    expect(lines).toContain('you moved; mailer prints: To: you, 7 Oak Avenue, Shelbyville');
    expect(lines).toContain('shop reads through the capability: 7 Oak Avenue, Shelbyville');
    expect(lines).toContain('shop evals on your node: ERR_ACCESS_DENIED');
    expect(lines).toContain("shop's code on the sharing node calls your node: ERR_SANDBOX");
    expect(lines).toContain("shop reads the sharing node's own refs: ERR_SANDBOX");
    expect(lines).toContain('capabilities the shop sees: readHomeAddress');

    // (b) Tom's list is appended; a malformed one is refused whole; the mailbox is write-only.
    expect(lines).toContain('Tom sent 4 movies; your collection has 6');
    expect(stdout).toMatch(/^malformed list: ERR_USER TypeError: not a \{ title: string, year: number \}: .*Jaws.*; your collection still has 6$/m);
    expect(lines).toContain('Tom reads your collection through the mailbox: ERR_SANDBOX');
    expect(lines).toContain('movies per decade: 1960s: 1, 1970s: 2, 1980s: 1, 1990s: 1, 2010s: 1');
  });

  itFailsWithoutAContainer('sharing');
});
