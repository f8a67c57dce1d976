/**
 * Builds deploy/Containerfile with the first builder that works here (a Docker engine, podman, buildah) and
 * checks the image: non-root, nothing in /data, and (where the builder can also run containers) that it
 * serves /readyz and stops with exit code 0 on SIGTERM. Where no builder works, or the builder cannot pull
 * the base image (no registry but npm's and Debian's is reachable from this machine), it skips and says why.
 * The image and any container are removed afterwards, pass or fail.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { defer, until } from '../helpers/containers.js';
import { ROOT } from './manifests.js';

const CONTAINERFILE = join(ROOT, 'deploy', 'Containerfile');
const BASE = /^ARG NODE_IMAGE=(\S+)$/m.exec(readFileSync(CONTAINERFILE, 'utf8'))![1]!;

type Builder = 'docker' | 'podman' | 'buildah';

const firstLine = (text: string | undefined): string => (text ?? '').trim().split('\n')[0] || 'no output';

/** The first builder whose engine answers, or why none does. */
async function findBuilder(): Promise<{ builder: Builder } | { why: string }> {
  const why: string[] = [];
  for (const builder of ['docker', 'podman', 'buildah'] as const) {
    const r = await execa(builder, ['info'], { reject: false, timeout: 30_000 });
    if (r.exitCode === 0) return { builder };
    why.push(`${builder}: ${r.exitCode === undefined ? 'not installed' : firstLine(r.stderr)}`);
  }
  return { why: why.join('; ') };
}

describe('the OCI image', () => {
  it('builds from deploy/Containerfile, runs as a non-root user, serves /readyz and stops on SIGTERM', async (ctx) => {
    const found = await findBuilder();
    if ('why' in found) {
      console.warn(`skipped: no image builder works here (${found.why})`);
      return ctx.skip();
    }
    const { builder } = found;
    const pulled = await execa(builder, ['pull', BASE], { reject: false, timeout: 300_000 });
    if (pulled.exitCode !== 0) {
      console.warn(`skipped: ${builder} cannot pull the base image ${BASE} here (${firstLine(pulled.stderr)})`);
      return ctx.skip();
    }

    const tag = `localhost/keynode-test:${process.pid}-${Date.now()}`;
    defer(() => execa(builder, ['rmi', '-f', tag], { reject: false }));
    const build = await execa(builder, [builder === 'buildah' ? 'bud' : 'build', '-f', CONTAINERFILE, '-t', tag, ROOT], { reject: false, timeout: 1_200_000, all: true });
    expect(build.exitCode, build.all?.slice(-4000)).toBe(0);

    const user = await execa(builder, builder === 'buildah' ? ['inspect', '--format', '{{.OCIv1.Config.User}}', tag] : ['image', 'inspect', '--format', '{{.Config.User}}', tag]);
    expect(user.stdout.trim()).toBe('10001:10001');
    if (builder === 'buildah') {
      console.warn('buildah builds but does not run containers: the run checks need docker or podman');
      return;
    }

    // Nothing in /data: no key or store was baked into the image.
    const data = await execa(builder, ['run', '--rm', '--entrypoint', 'sh', tag, '-c', 'id -u; ls -A /data']);
    expect(data.stdout.trim().split('\n')).toEqual(['10001']);

    const name = `keynode-test-${process.pid}-${Date.now()}`;
    defer(() => execa(builder, ['rm', '-f', '-v', name], { reject: false }));
    const run = await execa(builder, ['run', '-d', '--name', name, '-p', '127.0.0.1::7070', tag], { reject: false });
    expect(run.exitCode, run.stderr).toBe(0);
    const mapped = (await execa(builder, ['port', name, '7070'])).stdout.trim().split('\n')[0]!;
    const url = `http://${mapped.replace(/^0\.0\.0\.0:/, '127.0.0.1:')}`;
    await until(async () => (await fetch(`${url}/readyz`).then((r) => r.status, () => 0)) === 200, 60_000, 'the container to be ready');

    const stop = await execa(builder, ['stop', '-t', '60', name], { reject: false });
    expect(stop.exitCode, stop.stderr).toBe(0);
    const exit = await execa(builder, ['inspect', '--format', '{{.State.ExitCode}}', name]);
    expect(exit.stdout.trim()).toBe('0');
    const logs = await execa(builder, ['logs', name], { all: true });
    expect(logs.all).toContain('keynode container stopped');
  }, 1_800_000);
});
