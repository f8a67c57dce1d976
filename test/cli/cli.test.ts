import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime } from 'keynode';
import { startContainerProcess, tempDir } from '../helpers/containers.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

describe('keynode CLI', () => {
  it('administers a running container with the operator identity', async () => {
    const data = await tempDir();
    const proc = await startContainerProcess(data, ['--idle-timeout-ms', '600000', '--capacity-storage-mb', '512.5']);
    const env = { KEYNODE_URL: proc.url, KEYNODE_IDENTITY: join(data, 'operator.key') };
    const kn = (...args: string[]) => execa(process.execPath, [CLI, ...args], { env, reject: false });

    const client = await connect(proc.url, { identity: proc.operator });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(node, (ctx) => ctx.log('hello from', ctx.here.id));

    const ls = await kn('ls');
    expect(ls.exitCode).toBe(0);
    expect(ls.stdout.split('\n')[0]).toMatch(/^ID\s+STATUS\s+PID\s+UPTIME\s+LIFETIME\s+MEMORY\s+STORAGE\s+LAST ACTIVITY\s+PARENT$/);
    expect(ls.stdout).toContain(node.id);

    const quiet = await kn('ls', '-q');
    expect(quiet.stdout.trim().split('\n')).toEqual([node.id]);
    const json = await kn('ls', '--json');
    const row = JSON.parse(json.stdout.trim()) as { id: string; status: string; pid: number };
    expect(row.id).toBe(node.id);
    expect(['idle', 'active']).toContain(row.status);
    expect(row.pid).toBeGreaterThan(0);

    const described = await kn('describe', node.url);
    expect(JSON.parse(described.stdout)).toMatchObject({ id: node.id, parent: proc.operator.id, lifetime: { kind: 'root' } });

    const logs = await kn('logs', node.id);
    expect(logs.stdout).toContain(`hello from ${node.id}`);
    // Its stored log line is storage it uses, and ls shows it.
    const stored = JSON.parse((await kn('ls', '--json')).stdout.trim()) as { storageBytes: number };
    expect(stored.storageBytes).toBeGreaterThan(`hello from ${node.id}`.length);

    const someone = Identity.generate();
    const granted = await kn('grant', someone.id, '--nodes', '5', '--awake', '2', '--memory', '256');
    expect(granted.exitCode).toBe(0);
    // Without --storage a grant may fill what the capacity allows (--capacity-storage-mb above).
    expect(JSON.parse(granted.stdout).limits).toEqual({ maxNodes: 5, maxAwake: 2, memoryMB: 256, storageMB: 512.5 });
    const regranted = await kn('grant', someone.id, '--nodes', '5', '--awake', '2', '--memory', '256', '--storage', '0.5');
    expect(JSON.parse(regranted.stdout).limits.storageMB).toBe(0.5);
    const budget = await kn('budget', someone.id);
    expect(JSON.parse(budget.stdout).used).toMatchObject({ nodes: 0, storageMB: 0, storageBytes: 0 });

    const stats = await kn('stats');
    expect(JSON.parse(stats.stdout)).toMatchObject({ awake: 1, storageBytes: stored.storageBytes });

    const destroyed = await kn('destroy', node.id);
    expect(destroyed.exitCode).toBe(0);
    expect(destroyed.stderr).toContain('destroyed');
    const missing = await kn('describe', node.id);
    expect(missing.exitCode).toBe(3);
    expect(missing.stderr).toContain('ERR_NODE_DESTROYED');

    // Another identity is no operator: access denied, exit code 4.
    const keyFile = join(data, 'someone.key');
    await someone.save(keyFile);
    const denied = await execa(process.execPath, [CLI, 'ls'], { env: { ...env, KEYNODE_IDENTITY: keyFile }, reject: false });
    expect(denied.exitCode).toBe(4);

    const usage = await kn('grant', someone.id);
    expect(usage.exitCode).toBe(2);
    const help = await kn('--help');
    expect(help.stdout).toContain('start');
    await client.close();
    await proc.stop();
    expect(proc.child.exitCode ?? (await proc.child).exitCode).toBe(0);
  }, 120_000); // two dozen CLI processes, each a Node start: slow on a loaded machine
});
