import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CONTAINER_ALLOCATOR_ENV } from '../../dist/cli/allocator.js';
import { startContainerProcess, tempDir } from '../helpers/containers.js';

/** `keynode start` run as a program (as npx runs it), from an environment without the allocator's variables. */
async function startAsProgram(extra: Record<string, string>): Promise<{ pid: number; stop(): Promise<number | undefined> }> {
  const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => !e[0].startsWith('MALLOC_') && e[1] !== undefined));
  const { child } = await startContainerProcess(await tempDir(), [], { ...env, ...extra }, { asProgram: true });
  return {
    pid: child.pid!,
    async stop() {
      child.kill('SIGTERM');
      return (await child).exitCode;
    },
  };
}

async function allocatorEnv(pid: number): Promise<Record<string, string>> {
  const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
  return Object.fromEntries(environ.filter((e) => e.startsWith('MALLOC_')).map((e) => e.split('=') as [string, string]));
}

describe.runIf(process.platform === 'linux')('keynode start and the allocator', () => {
  it("is one process, started with the allocator's settings; an operator's own setting is kept", async () => {
    const plain = await startAsProgram({});
    // The shell line execs node: the process the caller started is the container itself (kill -9 of it ends it).
    expect((await readFile(`/proc/${plain.pid}/comm`, 'utf8')).trim()).toBe('node');
    expect(await allocatorEnv(plain.pid)).toEqual(CONTAINER_ALLOCATOR_ENV);
    expect(await plain.stop()).toBe(0);

    const own = await startAsProgram({ MALLOC_ARENA_MAX: '4' });
    expect(await allocatorEnv(own.pid)).toEqual({ ...CONTAINER_ALLOCATOR_ENV, MALLOC_ARENA_MAX: '4' });
    expect(await own.stop()).toBe(0);
  });
});
