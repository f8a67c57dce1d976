import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connect, Lifetime } from 'keynode';
import { Container } from 'keynode/container';
import { tempDir } from '../helpers/containers.js';

/** Bytes in LevelDB's write-ahead logs: what the next open must replay before it serves anything. */
async function logBytes(db: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(db)) if (f.endsWith('.log')) n += (await stat(join(db, f))).size;
  return n;
}

describe('store across a graceful restart', () => {
  it('leaves no log to replay, and the next start serves what was written', async () => {
    const data = await tempDir();
    const c = await Container.start({ port: 0, data, logLevel: 'silent', poolMin: 0 });
    const client = await connect(c.url, { identity: c.operator });
    // ~1 MB of records: less than a memtable, so without a flush all of it stays in the log.
    const nodes = await client.spawnMany(3000, { lifetime: Lifetime.root() });
    await client.close();
    await c.close();
    expect(await logBytes(join(data, 'db'))).toBeLessThan(4096);

    const again = await Container.start({ port: 0, data, logLevel: 'silent', poolMin: 0 });
    try {
      const client2 = await connect(again.url, { identity: again.operator });
      expect((await client2.describe(nodes.at(-1)!.id)).id).toBe(nodes.at(-1)!.id);
      await client2.close();
    } finally {
      await again.close();
    }
  });
});
