/**
 * keynode as a dependency: `npm pack` makes a tarball; a project in another folder installs it (from the npm
 * cache; the registry is the only network it may reach), runs the CLI through npx, starts a container with
 * it, runs the README's quick start, and type-checks the same program in TypeScript against the installed
 * types (a wrong policy shape must be a type error, so the types are real).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { defer, tempDir } from '../helpers/containers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

async function versionOf(pkg: string): Promise<string> {
  return (JSON.parse(await readFile(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
}

describe('the packed package', () => {
  it('installs into another project, whose CLI, quick start and TypeScript types work', async () => {
    const dir = await tempDir('keynode-package-');
    // The test suite built dist already (npm test); pack it as it is.
    const packed = await execa(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT });
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const files = info!.files.map((f) => f.path);
    for (const f of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/container/index.d.ts', 'dist/cli/main.js', 'dist/worker/package.json', 'dist/container/edge/dashboard/page/app.js']) expect(files, f).toContain(f);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files.filter((f) => f.startsWith('test/'))).toEqual([]);

    const project = join(dir, 'consumer');
    await execa('mkdir', [project]);
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    const install = await execa(
      NPM,
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', join(dir, info!.filename), `typescript@${await versionOf('typescript')}`, `@types/node@${await versionOf('@types/node')}`],
      { cwd: project, reject: false, timeout: 240_000 },
    );
    expect(install.exitCode, install.stderr).toBe(0);

    // npx finds the bin; --version is the package's. A global install (here under a prefix of its own) puts it on the PATH.
    const expected = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const version = await execa('npx', ['--no-install', 'keynode', '--version'], { cwd: project });
    expect(version.stdout).toBe(expected);
    const prefix = join(dir, 'global');
    const global = await execa(NPM, ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', join(dir, info!.filename)], { reject: false, timeout: 240_000 });
    expect(global.exitCode, global.stderr).toBe(0);
    const onPath = await execa('keynode', ['--version'], { env: { PATH: `${join(prefix, 'bin')}:${process.env.PATH}` } });
    expect(onPath.stdout).toBe(expected);

    // A container started from the installed package (its workers run from there too).
    // The bin itself (npx would put an npm process between the test and the container).
    const container = execa(join(project, 'node_modules', '.bin', 'keynode'), ['start', '--port', '0', '--data', './.keynode', '--pool-min', '1'], { cwd: project, buffer: false, reject: false, cleanup: true, stdin: 'ignore' });
    defer(async () => {
      container.kill('SIGKILL');
      await container;
    });
    const url = await new Promise<string>((resolve, reject) => {
      let buffered = '';
      container.stdout!.on('data', (c: Buffer) => {
        buffered += c.toString();
        const m = /"msg":"keynode container started"/.test(buffered) && /"url":"([^"]+)"/.exec(buffered);
        if (m) resolve(m[1]!);
      });
      void container.then((r) => reject(new Error(`the installed container exited: ${String(r.exitCode)}`)));
    });

    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const program = /```js\n([\s\S]*?)```/.exec(readme)![1]!.replace("'http://127.0.0.1:7070'", JSON.stringify(url));
    await writeFile(join(project, 'quickstart.mjs'), program);
    const run = await execa(process.execPath, ['quickstart.mjs'], { cwd: project, reject: false, timeout: 60_000 });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toContain(`${url}/`);
    expect(run.stdout).toMatch(/status: '(idle|active)'/);

    // The same program in TypeScript, checked against the installed declarations (and theirs against
    // @types/node: skipLibCheck off), beside one with a wrong policy shape, which must be the only error. One
    // compiler run (it is the slow part): tsc still emits the good file, which then runs.
    await writeFile(
      join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out', types: ['node'], skipLibCheck: false }, include: ['*.ts'] }),
    );
    const typed = /## Use it from your project[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)![1]!;
    await writeFile(join(project, 'quickstart.ts'), typed);
    await writeFile(join(project, 'wrong.ts'), "import { connect, Lifetime } from 'keynode';\nconst c = await connect('http://127.0.0.1:1');\nawait c.spawn({ lifetime: Lifetime.root(), sandbox: { refs: 'sometimes' } });\n");
    const checked = await execa(join(project, 'node_modules', '.bin', 'tsc'), ['-p', '.'], { cwd: project, reject: false });
    const errors = checked.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors, checked.stdout).toHaveLength(1);
    expect(errors[0]).toMatch(/^wrong\.ts\(3,\d+\): error TS2322: Type '"sometimes"' is not assignable to type 'RefsMode/);
    const typedRun = await execa(process.execPath, [join('out', 'quickstart.js')], { cwd: project, reject: false, timeout: 60_000, env: { KEYNODE_URL: url } });
    expect(typedRun.exitCode, typedRun.stderr).toBe(0);
    expect(typedRun.stdout).toMatch(/^http:\/\/\S+ 5$/m);

    container.kill('SIGTERM');
    expect((await container).exitCode).toBe(0);
  }, 300_000);
});
