/**
 * The README's quick start is a program: it must run, as written, against a running container.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { startContainer } from './helpers/containers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

it('the README quick start runs as written', async () => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const program = /```js\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(program).toContain("from 'keynode'");
  const { url, data } = await startContainer();
  const source = program!.replace("'http://127.0.0.1:7070'", JSON.stringify(url)).replace("'./.keynode/operator.key'", JSON.stringify(join(data, 'operator.key')));
  // Inside the package, so `import ... from 'keynode'` resolves as it does for a user who installed it.
  const file = join(ROOT, 'test', 'fixtures', `quickstart-${process.pid}.mjs`);
  await writeFile(file, source);
  try {
    const run = await execa(process.execPath, [file], { reject: false, timeout: 60_000 });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toContain(`${url}/`); // the node URL it shares
    expect(run.stdout).toContain("name: 'TypeError'");
    expect(run.stdout).toMatch(/status: '(idle|active)'/);
  } finally {
    await rm(file, { force: true });
  }
});
