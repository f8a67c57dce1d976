import { readFile, readlink } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { Lifetime, type KeynodeError } from 'keynode';
import { workerReadableBy } from '../../dist/container/fleet/worker-process.js';
import { startContainer } from '../helpers/containers.js';

const isRoot = process.getuid?.() === 0;

async function uidOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/Uid:\s+(\d+)/.exec(status)![1]);
}

describe('walls around the worker process', () => {
  it('workers run with nothing of the container\'s environment and without access to the data directory', async () => {
    const { client, data } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(node, () => 1);
    const { pid } = await client.describe(node);
    const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').filter(Boolean);
    // Only the allocator's tuning: no variable of the container (no HOME, PATH, KEYNODE_*, secrets).
    expect(environ.sort()).toEqual(['MALLOC_ARENA_MAX=1', 'MALLOC_TRIM_THRESHOLD_=131072']);
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    expect(cmdline).toContain('--experimental-permission');
    expect(cmdline.some((a) => a.startsWith('--allow-fs-read=') && data.startsWith(a.slice('--allow-fs-read='.length)))).toBe(false);
    expect(cmdline.some((a) => a.startsWith('--allow-fs-write') || a.startsWith('--allow-child-process') || a.startsWith('--allow-worker'))).toBe(false);
  });

  // Switching users and namespaces needs a container that may do so; this machine's CI runs as root.
  it.runIf(isRoot)('workerUid runs workers as another user, or refuses to start when that user cannot read them', async () => {
    // Where this checkout lives decides whether "nobody" can read it (a 0700 temp dir cannot be searched).
    const problem = workerReadableBy(65534, 65534);
    const started = startContainer({ workerUid: 65534, workerGid: 65534 });
    if (problem) {
      expect(((await started.catch((e: unknown) => e)) as KeynodeError).code).toBe('ERR_UNAVAILABLE');
      return;
    }
    const { client } = await started;
    const node = await client.spawn({ lifetime: Lifetime.root() });
    expect(await client.at(node, (ctx) => ctx.ref('x').set(1).then(() => 'ok'))).toBe('ok');
    const { pid } = await client.describe(node);
    expect(await uidOf(pid!)).toBe(65534);
  });

  it.runIf(isRoot)('a workerWrapper puts workers in their own network namespace', async () => {
    const { client } = await startContainer({ workerWrapper: 'unshare --net --' });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    expect(await client.at(node, () => 'ok')).toBe('ok');
    const { pid } = await client.describe(node);
    expect(await readlink(`/proc/${pid}/ns/net`)).not.toBe(await readlink('/proc/self/ns/net'));
  });
});
