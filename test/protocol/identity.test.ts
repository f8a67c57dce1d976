import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Identity, isKeynodeError, type ErrorCode } from 'keynode';
import { tempDir } from '../helpers/containers.js';

async function codeOf(p: Promise<unknown>): Promise<ErrorCode> {
  const e = await p.then(
    () => {
      throw new Error('expected a KeynodeError, the promise resolved');
    },
    (e: unknown) => e,
  );
  expect(isKeynodeError(e), `expected a KeynodeError, got ${String(e)}`).toBe(true);
  return (e as { code: ErrorCode }).code;
}

describe('Identity files', () => {
  it('save then load gives the same principal, and it signs the same', async () => {
    const dir = await tempDir();
    const me = Identity.generate();
    const path = join(dir, 'me.key');
    await me.save(path);
    const again = await Identity.load(path);
    expect(again.id).toBe(me.id);
    expect(again.publicKey).toEqual(me.publicKey);
    expect(again.exportSecretKey()).toEqual(me.exportSecretKey());
    const message = new TextEncoder().encode('hello');
    expect(again.sign(message)).toEqual(me.sign(message)); // Ed25519 is deterministic
  });

  it('the key file has mode 0600, even under a permissive umask', async () => {
    const dir = await tempDir();
    const path = join(dir, 'me.key');
    const old = process.umask(0o000);
    try {
      await Identity.generate().save(path);
    } finally {
      process.umask(old);
    }
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it('saving over an existing file replaces it and keeps mode 0600', async () => {
    const dir = await tempDir();
    const path = join(dir, 'me.key');
    await writeFile(path, 'old contents', { mode: 0o644 });
    const me = Identity.generate();
    await me.save(path);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await Identity.load(path)).id).toBe(me.id);
  });

  it.each([0o644, 0o640, 0o604, 0o660])('loading a key file with mode %o fails with ERR_ACCESS_DENIED', async (mode) => {
    const dir = await tempDir();
    const path = join(dir, 'me.key');
    await Identity.generate().save(path);
    await chmod(path, mode);
    expect(await codeOf(Identity.load(path))).toBe('ERR_ACCESS_DENIED');
  });

  const corrupt: [string, (good: string) => string][] = [
    ['not JSON', () => 'definitely not json {'],
    ['empty', () => ''],
    ['JSON of the wrong type', () => JSON.stringify({ type: 'something-else', secretKey: 'AAAA' })],
    ['no secret key', (good) => JSON.stringify({ ...JSON.parse(good), secretKey: undefined })],
    ['a secret key of the wrong length', (good) => JSON.stringify({ ...JSON.parse(good), secretKey: Buffer.alloc(31).toString('base64') })],
    ['an id that does not match its key', (good) => JSON.stringify({ ...JSON.parse(good), id: Identity.generate().id })],
    ['a JSON array', () => '[]'],
    ['JSON null', () => 'null'],
  ];

  it.each(corrupt)('a key file that is %s fails with a KeynodeError', async (_, make) => {
    const dir = await tempDir();
    const path = join(dir, 'me.key');
    await Identity.generate().save(path);
    await writeFile(path, make(await readFile(path, 'utf8')), { mode: 0o600 });
    expect(await codeOf(Identity.load(path))).toBe('ERR_BAD_MESSAGE');
  });

  it('a missing key file fails with a KeynodeError', async () => {
    const dir = await tempDir();
    expect(isKeynodeError(await Identity.load(join(dir, 'nope.key')).catch((e: unknown) => e))).toBe(true);
  });

  it('fromSecretKey refuses a seed that is not 32 bytes', () => {
    for (const n of [0, 31, 33, 64]) {
      let err: unknown;
      try {
        Identity.fromSecretKey(new Uint8Array(n));
      } catch (e) {
        err = e;
      }
      expect(isKeynodeError(err), `${n} bytes`).toBe(true);
    }
  });
});

describe('Identity secrecy', () => {
  const me = Identity.generate();
  const seed = Buffer.from(me.exportSecretKey());
  const forms = [seed.toString('base64'), seed.toString('hex'), seed.toString('base64url'), [...seed].join(',')];

  it('JSON.stringify shows the ID and never the secret key', () => {
    const json = JSON.stringify(me);
    expect(JSON.parse(json)).toEqual({ id: me.id });
    const nested = JSON.stringify({ me, list: [me] });
    for (const f of forms) {
      expect(json).not.toContain(f);
      expect(nested).not.toContain(f);
    }
  });

  it('util.inspect and String() do not reveal the secret key', () => {
    const shown = [inspect(me, { showHidden: true, depth: 10 }), String(me), `${inspect({ me })}`];
    for (const s of shown) for (const f of forms) expect(s).not.toContain(f);
  });

  it('exportSecretKey returns a copy', () => {
    const a = me.exportSecretKey();
    a.fill(0);
    expect(me.exportSecretKey()).toEqual(new Uint8Array(seed));
  });
});
