/**
 * `keynode move` and `keynode drain` against a fleet of two: people get key/value lines and a table, programs
 * get --json, and failures get a code on stderr and an exit status.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { Lifetime } from 'keynode';
import type { TestContainer } from '../helpers/containers.js';
import { startFleet } from '../helpers/fleet-local.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

function cli(c: TestContainer, ...args: string[]) {
  return execa(process.execPath, [CLI, ...args, '--url', c.url, '--identity', join(c.data, 'operator.key')], { reject: false, env: { NO_COLOR: '1' } });
}

describe('keynode move and drain', () => {
  it('moves a node (human and --json), drains a container (--json), and says why a move cannot happen', async () => {
    const [a, b] = (await startFleet(2)) as [TestContainer, TestContainer];
    const [one, two] = await a.client.spawnMany(2, { lifetime: Lifetime.root(), sandbox: { refs: 'readwrite' } });
    await a.client.at(one!, async (ctx) => ctx.ref('v').set('one'));

    const human = await cli(a, 'move', one!.url, '--to', b.url);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`url\\s+${b.url}/${one!.id}`));
    expect(await a.client.at(one!, async (ctx) => ctx.ref('v').get())).toBe('one');

    const json = await cli(a, 'move', two!.id, '--to', b.url, '--json');
    expect(json.exitCode).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ id: two!.id, url: `${b.url}/${two!.id}`, nodes: 1 });

    const notPeer = await cli(a, 'move', (await a.client.spawn({ lifetime: Lifetime.root() })).id, '--to', 'http://127.0.0.1:9');
    expect(notPeer.exitCode).toBe(1);
    expect(notPeer.stderr).toMatch(/^keynode: ERR_NOT_PEER: /);
    const badUrl = await cli(a, 'move', one!.id, '--to', 'not a url');
    expect(badUrl.exitCode).toBe(2);

    const drained = await cli(a, 'drain', '--json');
    expect(drained.exitCode).toBe(0);
    expect(JSON.parse(drained.stdout)).toMatchObject({ moved: 1, nodes: 1, failed: [], ephemeral: 0, peers: { [b.url]: 1 } });
    const again = await cli(a, 'drain');
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toMatch(/moved\s+0/);
    expect(again.stdout).toMatch(/ephemeral\s+0 \(held by clients/);
  });
});
