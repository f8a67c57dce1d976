/**
 * The key mint on its own: real worker threads making real Ed25519 keys, checked against node:crypto.
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Identity } from 'keynode';
import { KeyMint } from '../../dist/container/policies/keygen.js';
import { unsealSeed } from '../../dist/container/seal.js';

/** OS threads of this process (Linux), to see that none is left behind. */
function osThreads(): number | undefined {
  try {
    return Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  } catch {
    return undefined;
  }
}

describe('key mint', () => {
  it('makes keys on threads whose IDs are their public keys and whose sealed seeds open under the master key', async () => {
    const master = randomBytes(32);
    const mint = new KeyMint(master, { threads: 2, chunk: 100 });
    try {
      const keys = await mint.mint('holder', 1000);
      expect(keys).toHaveLength(1000);
      expect(new Set(keys.map((k) => k.id)).size).toBe(1000);
      expect(mint.threads).toBe(2);
      for (const k of keys.slice(0, 20)) {
        expect(Identity.fromSecretKey(k.seed).id).toBe(k.id);
        expect(unsealSeed(master, k.id, k.sealed)).toEqual(k.seed);
        expect(() => unsealSeed(master, keys[999]!.id, k.sealed)).toThrow(); // bound to its ID
      }
    } finally {
      await mint.close();
    }
  });

  it('derives client-chosen seeds in order', async () => {
    const mint = new KeyMint(randomBytes(32), { threads: 2, chunk: 7 });
    try {
      const seeds = Array.from({ length: 50 }, () => new Uint8Array(randomBytes(32)));
      const keys = await mint.derive('holder', seeds);
      expect(keys.map((k) => k.id)).toEqual(seeds.map((s) => Identity.fromSecretKey(s).id));
      expect(keys.map((k) => k.seed)).toEqual(seeds);
    } finally {
      await mint.close();
    }
  });

  it('serves holders in turn: a small request is not stuck behind another holder’s big one', async () => {
    const mint = new KeyMint(randomBytes(32), { threads: 1, chunk: 100, stock: 0 });
    try {
      let bigDone = false;
      const big = mint.mint('big', 5000).then(() => (bigDone = true));
      const small = await mint.mint('small', 10);
      expect(small).toHaveLength(10);
      expect(bigDone).toBe(false);
      await big;
    } finally {
      await mint.close();
    }
  });

  it('refuses past its queue bound, and keeps a small stock only once keys were taken', async () => {
    const mint = new KeyMint(randomBytes(32), { threads: 1, chunk: 100, stock: 200, maxQueued: 1000 });
    try {
      expect(mint.generated).toBe(0);
      expect(mint.threads).toBe(0); // nothing asked, nothing started
      const first = mint.mint('a', 800);
      await expect(mint.mint('b', 300)).rejects.toMatchObject({ code: 'ERR_OVERLOADED' });
      await first;
      // The stock fills after a request, then serves a small one from memory.
      await until(() => mint.generated >= 800 + 200);
      const made = mint.generated;
      expect(await mint.mint('c', 5)).toHaveLength(5);
      expect(mint.generated).toBe(made);
    } finally {
      await mint.close();
    }
  });

  it('its threads end when it closes, and after a quiet spell', async () => {
    const before = osThreads();
    const mint = new KeyMint(randomBytes(32), { threads: 2, chunk: 50, stock: 0, idleMs: 100 });
    await mint.mint('a', 200);
    expect(mint.threads).toBe(2);
    await until(() => mint.threads === 0);
    await mint.mint('a', 200); // starts again on demand
    expect(mint.threads).toBe(2);
    await mint.close();
    expect(mint.threads).toBe(0);
    if (before !== undefined) expect(osThreads()).toBe(before);
    await expect(mint.mint('a', 1)).rejects.toMatchObject({ code: 'ERR_UNAVAILABLE' });
  });
});

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
