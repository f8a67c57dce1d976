/**
 * @module examples/lib/env
 * Where an example runs. With KEYNODE_URL (and KEYNODE_IDENTITY, a key file allowed to spawn) it uses that
 * running container; without, it starts its own on free loopback ports with temporary data, and stops it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// Examples import the package by name, as a user's program would (tsconfig maps it to the sources).
import { connect, Identity, type Client } from 'keynode';
import { Container } from 'keynode/container';

export interface Site {
  url: string;
  /** A client allowed to spawn on this container. */
  client: Client;
  /** Restarts the container on the same data, when this example owns it (undefined otherwise). */
  restart?: () => Promise<void>;
}

export interface Env {
  sites: Site[];
  /** True when the example runs against containers it started itself. */
  own: boolean;
  close(): Promise<void>;
}

/**
 * `count` containers. With KEYNODE_URL set, every site is that container (KEYNODE_URL_2 names a second one
 * for examples that cross containers).
 */
export async function environment(count = 1): Promise<Env> {
  const external = process.env.KEYNODE_URL;
  if (external) {
    // As the CLI does: the operator key of a container started here, unless told otherwise.
    const first = process.env.KEYNODE_IDENTITY ?? './.keynode/operator.key';
    const urls = [external, process.env.KEYNODE_URL_2 ?? external];
    const keys = [first, process.env.KEYNODE_IDENTITY_2 ?? first];
    const sites: Site[] = [];
    for (let i = 0; i < count; i++) {
      const url = urls[Math.min(i, 1)]!;
      sites.push({ url, client: await connect(url, { identity: await Identity.load(keys[Math.min(i, 1)]!) }) });
    }
    return { sites, own: false, close: async () => void (await Promise.all(sites.map((s) => s.client.close()))) };
  }

  const dirs: string[] = [];
  const containers: Container[] = [];
  const sites: Site[] = [];
  for (let i = 0; i < count; i++) {
    const data = await mkdtemp(join(tmpdir(), 'keynode-example-'));
    dirs.push(data);
    let container = await Container.start({ port: 0, data, logLevel: 'warn', idleTimeoutMs: 2000 });
    containers.push(container);
    const site: Site = { url: container.url, client: await connect(container.url, { identity: container.operator }) };
    const port = Number(new URL(container.url).port);
    site.restart = async () => {
      await site.client.close();
      await container.close();
      // Same data, same port: node URLs handed out before the restart stay valid.
      container = await Container.start({ port, data, logLevel: 'warn', idleTimeoutMs: 2000 });
      containers[i] = container;
      site.client = await connect(container.url, { identity: container.operator });
    };
    sites.push(site);
  }
  return {
    sites,
    own: true,
    async close() {
      await Promise.all(sites.map((s) => s.client.close()));
      await Promise.all(containers.map((c) => c.close()));
      await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
    },
  };
}

/** Runs an example's main, printing a last line `ok: <name>` or `failed: <name>: <why>`; exit code 0 or 1. */
export async function run(name: string, main: (env: Env) => Promise<void>, sites = 1): Promise<void> {
  let env: Env | undefined;
  try {
    env = await environment(sites);
    await main(env);
    console.log(`ok: ${name}`);
  } catch (e) {
    const code = (e as { code?: string }).code;
    console.log(`failed: ${name}: ${code ? `${code}: ` : ''}${(e as Error).stack ?? e}`);
    process.exitCode = 1;
  } finally {
    await env?.close();
  }
}

/** Fails the example (it must exit non-zero when what it demonstrates did not work). */
export function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${what}`);
}
