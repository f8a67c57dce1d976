/**
 * `keynode backup` copies a running container's store during a storm of writes and spawns; `keynode restore`
 * makes a data directory from it. Every write acknowledged before the snapshot is in the restored
 * container, and no commit is there in part.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { Lifetime, type NodeHandle, type NodeInfo } from 'keynode';
import { startContainer, tempDir } from '../helpers/containers.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const kn = (...args: string[]) => execa(process.execPath, [CLI, ...args], { reject: false });

describe('backup and restore', () => {
  it('a backup taken during a write storm restores every acknowledged write before it, and no commit in part', async () => {
    const tc = await startContainer({ idleTimeoutMs: 60_000 });
    const { client, data, url } = tc;
    const operatorKey = join(data, 'operator.key');

    // Some bulk, so the backup takes several pages (4 MiB each).
    const bulk = await client.spawn({ lifetime: Lifetime.root() });
    for (let i = 0; i < 3; i++) {
      await client.at(bulk, async (ctx, i, kb) => {
        for (let j = 0; j < 8; j++) await ctx.index('blob').put(`${i}-${j}`, 'x'.repeat(kb * 1024));
      }, i, 250);
    }

    const writers = await client.spawnMany(4, { lifetime: Lifetime.root() });
    /** Per writer: the time each value was acknowledged. */
    const acked = writers.map(() => new Map<number, number>());
    const batches: { ids: string[]; at: number }[] = [];
    let storming = true;
    const storm = [
      ...writers.map(async (node, w) => {
        for (let v = 1; storming; v++) {
          // One eval, three writes: restored, they are all there or none is.
          await client.at(node, async (ctx, v) => {
            await ctx.ref('a').set(v);
            await ctx.ref('b').set(v);
            await ctx.index('seq').put(String(v).padStart(8, '0'), v);
          }, v);
          acked[w]!.set(v, Date.now());
        }
      }),
      (async () => {
        while (storming) {
          const nodes = await client.spawnMany(25, { lifetime: Lifetime.root() });
          batches.push({ ids: nodes.map((n) => n.id), at: Date.now() });
          await new Promise((r) => setTimeout(r, 20)); // a storm, not a siege: the backup's own process needs the CPU too
        }
      })(),
    ];
    const deadline = Date.now() + 30_000;
    while (acked.some((m) => m.size < 3) || batches.length < 2) {
      if (Date.now() > deadline) throw new Error('the storm did not get going');
      await new Promise((r) => setTimeout(r, 20));
    }

    const dir = join(await tempDir(), 'backup');
    let backup;
    try {
      backup = await kn('backup', dir, '--url', url, '--identity', operatorKey, '--json');
    } finally {
      storming = false;
      await Promise.all(storm);
    }
    expect(backup.exitCode, backup.stderr).toBe(0);
    const manifest = JSON.parse(backup.stdout) as { takenAt: number; entries: number; containerId: string };
    expect(manifest.containerId).toBe(tc.container.id);
    // The storm ran on both sides of the snapshot, so the test means something.
    expect(acked.some((m) => [...m.values()].some((at) => at > manifest.takenAt))).toBe(true);
    expect(JSON.parse(await readFile(join(dir, 'backup.json'), 'utf8'))).toMatchObject({ entries: manifest.entries });

    // Refusals, before anything is written.
    const wrongKey = join(data, 'wrong.master.key');
    await writeFile(wrongKey, `${Buffer.alloc(32, 7).toString('base64')}\n`, { mode: 0o600 });
    const wrongData = join(await tempDir(), 'wrong');
    const unfinished = join(await tempDir(), 'unfinished');
    await mkdir(join(unfinished, 'db'), { recursive: true });
    const [notEmpty, wrong, half] = await Promise.all([
      kn('backup', dir, '--url', url, '--identity', operatorKey),
      kn('restore', dir, '--data', wrongData, '--master-key', wrongKey, '--identity', operatorKey),
      kn('restore', unfinished, '--data', wrongData, '--master-key', join(data, 'master.key'), '--identity', operatorKey),
    ]);
    expect(notEmpty.exitCode).toBe(1);
    expect(notEmpty.stderr).toMatch(/^keynode: ERR_EXISTS: /);
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr).toMatch(/^keynode: ERR_BAD_BACKUP: .*does not open the node keys/);
    expect(half.exitCode).toBe(1);
    expect(half.stderr).toContain('not a finished keynode backup');
    expect(existsSync(wrongData)).toBe(false);

    const restoredData = join(await tempDir(), 'restored');
    const restore = await kn('restore', dir, '--data', restoredData, '--master-key', join(data, 'master.key'), '--identity', operatorKey, '--json');
    expect(restore.exitCode, restore.stderr).toBe(0);
    expect(JSON.parse(restore.stdout)).toMatchObject({ containerId: tc.container.id, entries: manifest.entries });
    await tc.container.close();

    const back = await startContainer({ data: restoredData, idleTimeoutMs: 60_000 });
    expect(back.container.id).toBe(tc.container.id);
    const here = (n: NodeHandle) => n.id; // the operator spawned them: it may eval on them by ID
    for (const [w, node] of writers.entries()) {
      const got = await back.client.at(here(node), async (ctx) => ({ a: await ctx.ref('a').get(), b: await ctx.ref('b').get(), seq: (await ctx.index('seq').entries({ limit: 10_000 })).map(([, v]) => v) }));
      const before = Math.max(0, ...[...acked[w]!].filter(([, at]) => at < manifest.takenAt).map(([v]) => v));
      expect(got.a, `writer ${w}`).toBe(got.b);
      expect(got.a as number).toBeGreaterThanOrEqual(before);
      expect(got.seq).toEqual(Array.from({ length: got.a as number }, (_, i) => i + 1));
    }
    // Spawns: every batch acknowledged before the snapshot is there; every batch is whole or absent.
    const present = new Set<string>();
    for (let after: string | undefined; ; ) {
      const page = (await back.client.request('list', { after, limit: 1000 })) as { nodes: NodeInfo[] };
      for (const n of page.nodes) present.add(n.id);
      if (page.nodes.length < 1000) break;
      after = page.nodes.at(-1)!.id;
    }
    for (const b of batches) {
      const count = b.ids.filter((id) => present.has(id)).length;
      expect([0, b.ids.length]).toContain(count);
      if (b.at < manifest.takenAt) expect(count).toBe(b.ids.length);
    }
    // The bulk node's pages all arrived.
    const blobs = await back.client.at(here(bulk), async (ctx) => (await ctx.index('blob').entries({ limit: 100 })).map(([k, v]) => [k, (v as string).length]));
    expect(blobs).toHaveLength(24);
    await back.client.destroy(back.client.node(bulk.id, bulk.exportSecretKey())); // signed by its own key
    await expect(back.client.describe(bulk.id)).rejects.toMatchObject({ code: 'ERR_NODE_DESTROYED' });
    await rm(dir, { recursive: true, force: true });
  }, 180_000);
});
