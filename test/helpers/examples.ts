/**
 * Runs a compiled example as a user would (`npm run example -- <name>` runs the same file).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { Identity } from 'keynode';
import { tempDir } from './containers.js';

const RUN = fileURLToPath(new URL('../../dist/examples/run.js', import.meta.url));

/** The example's run; KEYNODE_URL '' makes it start its own containers. */
export function runExample(name: string, env: Record<string, string> = { KEYNODE_URL: '' }) {
  return execa(process.execPath, [RUN, name], { reject: false, timeout: 120_000, env: { ...process.env, ...env } });
}

/** Every example must exit non-zero, with a code, when the container it is pointed at does not exist. */
export function itFailsWithoutAContainer(name: string): void {
  it('exits non-zero when the container it is pointed at does not exist', async () => {
    const key = join(await tempDir(), 'me.key');
    await Identity.generate().save(key);
    const { exitCode, stdout, stderr } = await runExample(name, { KEYNODE_URL: 'http://127.0.0.1:1', KEYNODE_IDENTITY: key });
    expect(exitCode).not.toBe(0);
    expect(`${stdout}\n${stderr}`).toContain('ERR_UNAVAILABLE');
    expect(stdout).not.toContain(`ok: ${name}`);
  });
}
