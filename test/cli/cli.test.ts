import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { connect, ERROR_STATUS, Identity, Lifetime } from 'keynode';
import { startContainerProcess, tempDir } from '../helpers/containers.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function cli(env: Record<string, string> = {}) {
  return (...args: string[]) => execa(process.execPath, [CLI, ...args], { env, reject: false });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

describe('keynode CLI', () => {
  it('administers a running container: people get tables, programs get --json', async () => {
    const data = await tempDir();
    const proc = await startContainerProcess(data, ['--idle-timeout-ms', '60000']);
    const kn = cli({ KEYNODE_URL: proc.url, KEYNODE_IDENTITY: join(data, 'operator.key') });

    const client = await connect(proc.url, { identity: proc.operator });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(node, (ctx) => ctx.log('hello from', ctx.here.id));

    // Read-only commands side by side: each is a process start (about a second on a loaded machine).
    const [ls, quiet, lsJson, described, describedJson, logs, logsJson] = await Promise.all([
      kn('ls'), kn('ls', '-q'), kn('ls', '--json'), kn('describe', node.url), kn('describe', node.url, '--json'), kn('logs', node.id), kn('logs', node.id, '--json'),
    ]);
    expect(ls.exitCode).toBe(0);
    expect(ls.stdout.split('\n')[0]).toMatch(/^ID\s+STATUS\s+PID\s+UPTIME\s+LIFETIME\s+MEMORY\s+STORAGE\s+LAST ACTIVITY\s+PARENT$/);
    expect(ls.stdout).toContain(node.id);
    expect(quiet.stdout.trim().split('\n')).toEqual([node.id]);
    // --json: one JSON array, each element the shape `describe --json` prints.
    const listed = JSON.parse(lsJson.stdout) as { id: string; status: string; pid: number }[];
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id: node.id, url: node.url, parent: proc.operator.id });
    expect(['idle', 'active']).toContain(listed[0]!.status);
    expect(listed[0]!.pid).toBeGreaterThan(0);

    expect(described.stdout).toMatch(new RegExp(`^id\\s+${node.id}$`, 'm'));
    expect(described.stdout).toMatch(/^status\s+(idle|active) \(pid \d+/m);
    expect(JSON.parse(describedJson.stdout)).toMatchObject({ id: node.id, parent: proc.operator.id, lifetime: { kind: 'root' } });

    expect(logs.stdout).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\S+ hello from ${node.id}$`));
    const jsonLines = logsJson.stdout.split('\n').map((l) => JSON.parse(l) as { seq: number; ts: number; line: string });
    expect(jsonLines).toEqual([{ seq: expect.any(Number), ts: expect.any(Number), line: `hello from ${node.id}` }]);

    const someone = Identity.generate();
    // A principal without a grant has a budget of zero, reported, not refused.
    const none = await kn('budget', someone.id, '--json');
    expect(none.exitCode).toBe(0);
    expect(JSON.parse(none.stdout)).toMatchObject({ principal: someone.id, limits: { maxNodes: 0, maxAwake: 0, memoryMB: 0, storageMB: 0 }, used: { nodes: 0, awake: 0, memoryMB: 0, storageBytes: 0 } });
    const granted = await kn('grant', someone.id, '--nodes', '5', '--awake', '2', '--memory', '256');
    expect(granted.exitCode).toBe(0);
    expect(granted.stdout).toMatch(/^maxNodes\s+5\s+0$/m);
    const [grantedJson, budget, mine, stats, statsJson] = await Promise.all([
      kn('grant', someone.id, '--nodes', '5', '--awake', '2', '--memory', '256', '--json'), kn('budget', someone.id), kn('budget', '--json'), kn('stats'), kn('stats', '--json'),
    ]);
    expect(JSON.parse(grantedJson.stdout).limits).toEqual({ maxNodes: 5, maxAwake: 2, memoryMB: 256, storageMB: 10_240 });
    // Its stored log line is storage the node uses, and ls shows it.
    const withStorage = JSON.parse((await kn('ls', '--json')).stdout) as { storageBytes: number }[];
    expect(withStorage[0]!.storageBytes).toBeGreaterThan(`hello from ${node.id}`.length);
    expect(budget.stdout).toMatch(/^memoryMB\s+256\s+0$/m);
    expect(JSON.parse(mine.stdout).principal).toBe(proc.operator.id);
    expect(stats.stdout).toMatch(/^awake\s+1$/m);
    expect(JSON.parse(statsJson.stdout)).toMatchObject({ awake: 1 });

    const destroyed = await kn('destroy', node.id, '--json');
    expect(destroyed.exitCode).toBe(0);
    expect(JSON.parse(destroyed.stdout)).toEqual({ destroyed: node.id });
    const missing = await kn('describe', node.id);
    expect(missing.exitCode).toBe(3);
    expect(missing.stderr).toMatch(/^keynode: ERR_NODE_DESTROYED: /);
    expect(missing.stdout).toBe('');
    expect(JSON.parse((await kn('ls', '--json')).stdout)).toEqual([]);

    // Another identity is no operator: access denied, exit code 4.
    const keyFile = join(data, 'someone.key');
    await someone.save(keyFile);
    const denied = await cli({ KEYNODE_URL: proc.url, KEYNODE_IDENTITY: keyFile })('ls');
    expect(denied.exitCode).toBe(4);
    expect(denied.stderr).toMatch(/^keynode: ERR_ACCESS_DENIED: /);

    const [usage, help, version] = await Promise.all([kn('grant', someone.id), kn('--help'), kn('--version')]);
    expect(usage.exitCode).toBe(2);
    expect(help.stdout).toContain('start');
    expect(help.stdout).toContain('dashboard');
    expect(version.stdout).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    await client.close();
    await proc.stop();
    expect(proc.child.exitCode ?? (await proc.child).exitCode).toBe(0);
  }, 240_000);

  it('says what went wrong, on stderr, with a code and an exit status, before doing anything', async () => {
    const dir = await tempDir();
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const kn = cli({ KEYNODE_URL: nowhere, KEYNODE_IDENTITY: join(dir, 'operator.key') });

    // No identity file: which flag and which variable choose one.
    const noId = await kn('ls');
    expect(noId.exitCode).toBe(2);
    expect(noId.stderr).toMatch(/^keynode: ERR_NO_IDENTITY: /);
    expect(noId.stderr).toContain('--identity');
    expect(noId.stderr).toContain('KEYNODE_IDENTITY');

    // identity new / show: no code needed to make a key.
    const file = join(dir, 'me.key');
    const made = await kn('identity', 'new', file);
    expect(made.exitCode).toBe(0);
    const id = made.stdout.trim();
    expect(id).toBe((await Identity.load(file)).id);
    expect((await kn('identity', 'show', file)).stdout).toBe(id);
    expect(JSON.parse((await kn('identity', 'show', file, '--json')).stdout)).toEqual({ id, file });
    const twice = await kn('identity', 'new', file);
    expect(twice.exitCode).toBe(1);
    expect(twice.stderr).toMatch(/^keynode: ERR_EXISTS: /);
    expect((await Identity.load(file)).id).toBe(id);
    const other = JSON.parse((await kn('identity', 'new', join(dir, 'other.key'), '--json')).stdout) as { id: string };
    expect(other.id).not.toBe(id);
    expect((await kn('identity', 'show', join(dir, 'nope.key'))).exitCode).toBe(2);

    // A malformed node argument is refused before any identity is read or socket opened.
    const bads = await Promise.all(['describe', 'logs', 'destroy'].map((cmd) => kn(cmd, 'not-a-node', '--identity', file)));
    for (const bad of bads) {
      expect(bad.exitCode).toBe(2);
      expect(bad.stderr).toMatch(/^keynode: ERR_BAD_NODE_ID: "not-a-node" is not a node ID or URL/);
      expect(bad.stdout).toBe('');
    }
    const badPrincipal = await kn('budget', 'nobody', '--identity', file);
    expect(badPrincipal.exitCode).toBe(2);
    expect(badPrincipal.stderr).toContain('is not a principal ID');

    // No container there: unavailable, exit 5.
    const down = await kn('stats', '--identity', file);
    expect(down.exitCode).toBe(5);
    expect(down.stderr).toMatch(/^keynode: ERR_UNAVAILABLE: /);
  }, 180_000);

  it('refuses a port in use before writing anything to the data directory, and suggests --port', async () => {
    const first = await startContainerProcess(await tempDir());
    const port = new URL(first.url).port;
    const data = join(await tempDir(), 'second');
    const second = await cli()('start', '--port', port, '--data', data);
    expect(second.exitCode).toBe(5);
    expect(second.stderr).toMatch(/^keynode: ERR_PORT_IN_USE: port \d+ on 127\.0\.0\.1 is in use/);
    expect(second.stderr).toContain('--port');
    expect(existsSync(data)).toBe(false);
    await first.stop();
  });

  it('logs -f keeps following across a restart of the container, and says so on stderr', async () => {
    const data = await tempDir();
    const port = String(await freePort());
    let proc = await startContainerProcess(data, ['--port', port]);
    const client = await connect(proc.url, { identity: proc.operator });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    await client.at(node, (ctx) => ctx.log('before the restart'));
    const follower = execa(process.execPath, [CLI, 'logs', '-f', node.id, '--url', proc.url, '--identity', join(data, 'operator.key')], { buffer: false, reject: false, cleanup: true });
    let stdout = '';
    let stderr = '';
    follower.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    follower.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const waitFor = async (what: () => boolean, label: string) => {
      const deadline = Date.now() + 60_000;
      while (!what()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}; stdout: ${stdout}; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await waitFor(() => stdout.includes('before the restart'), 'the first line');
      await proc.stop();
      await waitFor(() => stderr.includes('lost the container'), 'the follower to notice');
      expect(stderr).toContain('reconnecting with backoff');
      proc = await startContainerProcess(data, ['--port', port]);
      await waitFor(() => stderr.includes('reconnected'), 'the follower to reconnect');
      await client.at(node, (ctx) => ctx.log('after the restart'));
      await waitFor(() => stdout.includes('after the restart'), 'a line written after the restart');
      expect(stdout.match(/before the restart/g)).toHaveLength(1); // nothing printed twice
      expect(follower.exitCode).toBeNull();
    } finally {
      follower.kill('SIGTERM');
      await follower;
      await client.close();
      await proc.stop();
    }
  }, 180_000);

  it("every error code the CLI can print is in the README's tables", async () => {
    const { CLI_CODES } = (await import(join(ROOT, 'dist/cli/output.js'))) as { CLI_CODES: Record<string, number> };
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const missing = [...Object.keys(ERROR_STATUS), ...Object.keys(CLI_CODES)].filter((code) => !readme.includes(`\`${code}\``));
    expect(missing).toEqual([]);
  });
});
