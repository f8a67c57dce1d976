/**
 * A worker whose language sandbox is broken: arbitrary code runs in the worker process and speaks the frame
 * protocol (test/fixtures/hostile-worker.cjs, preloaded through KEYNODE_WORKER_WRAPPER). The container treats
 * every frame as hostile and bounds what such a worker can make it do: the node's own sandbox (log,
 * maxMessageBytes) is applied by the container, CPU used with no eval in flight is read from /proc and
 * limited, a frame flood costs other tenants a bounded delay, an eval that may have run never runs twice, and
 * a worker that renames itself is still killed when its container restarts after kill -9.
 */
import { execa } from 'execa';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { connect, Identity, Lifetime, type KeynodeError } from 'keynode';
import type { Container } from 'keynode/container';
import { defer, startContainer, startContainerProcess, tempDir, until } from '../helpers/containers.js';

const HOSTILE = fileURLToPath(new URL('../fixtures/hostile-wrapper.sh', import.meta.url));

/** An eval the hostile worker takes over and plays as `attack` says (see the fixture). */
const hostile = (attack: Record<string, unknown>) => new Function(`return () => /*HOSTILE<${JSON.stringify(attack)}>HOSTILE*/ 0`)() as () => unknown;

const codeOf = async (p: Promise<unknown>): Promise<string | undefined> => ((await p.then(() => undefined, (e: unknown) => e)) as KeynodeError | undefined)?.code;

/** Fields of /proc/<pid>/stat from field 3 on (the command name may hold spaces), or undefined if there is no such process. */
function statOf(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** A process that exists and has not exited (a zombie waiting for its parent to reap it has). */
const running = (pid: number): boolean => (statOf(pid)?.[0] ?? 'Z') !== 'Z';
const cpuMsOf = (pid: number): number | undefined => {
  const f = statOf(pid);
  return f ? (Number(f[11]) + Number(f[12])) * 10 : undefined;
};

function killLater(pid: number): void {
  defer(async () => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  });
}

/** Resolves with the reason the node next loses its process. */
function nextSleep(container: Container, id: string): Promise<string> {
  return new Promise((resolve) => {
    const on = (node: string, why: string) => {
      if (node !== id) return;
      container.off('sleep', on);
      resolve(why);
    };
    container.on('sleep', on);
  });
}

async function allLogs(client: Awaited<ReturnType<typeof startContainer>>['client'], node: { id: string }): Promise<string[]> {
  return (await client.logs(node, { limit: 10_000 })).map((l) => l.line);
}

const p99 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;

describe('a worker whose sandbox is broken', () => {
  it('stores no log line for a node with sandbox.log false; and lines past the per-eval and per-line caps are cut by the container', async () => {
    const { client } = await startContainer({ workerWrapper: HOSTILE, logLines: 5000 });
    const quiet = await client.spawn({ lifetime: Lifetime.root(), sandbox: { log: false } });
    expect(await client.at(quiet, hostile({ attack: 'log', lines: 20 }))).toBe('logged');
    expect(await allLogs(client, quiet)).toEqual([]);

    const chatty = await client.spawn({ lifetime: Lifetime.root() });
    expect(await client.at(chatty, hostile({ attack: 'log', lines: 1, length: 60_000 }))).toBe('logged');
    const [long] = await allLogs(client, chatty);
    expect(long!.length).toBeLessThanOrEqual(8 * 1024 + 20);
    expect(long).toMatch(/truncated\]$/);

    expect(await client.at(chatty, hostile({ attack: 'log', lines: 3000 }))).toBe('logged');
    const lines = (await allLogs(client, chatty)).slice(1);
    // The worker's own cap (1000 lines and its note) holds even when the worker does not apply it, and
    // the container says how many it dropped.
    expect(lines.length).toBeLessThanOrEqual(1002);
    expect(lines.at(-1)).toMatch(/^\[keynode\] \d+ log lines of this eval dropped/);
  });

  it("is held to the node's maxMessageBytes: results (refused, worker killed), errors (cut), ctx.at calls (refused before they run), commits", async () => {
    const { container, client } = await startContainer({ workerWrapper: HOSTILE });
    const pids: number[] = [];
    container.on('wake', (_id, pid) => pids.push(pid));
    const small = await client.spawn({ lifetime: Lifetime.root(), sandbox: { maxMessageBytes: 1024 } });

    const slept = nextSleep(container, small.id);
    expect(await codeOf(client.at(small, hostile({ attack: 'big-result', bytes: 10 * 1024 * 1024 })))).toBe('ERR_TOO_LARGE');
    expect(await slept).toBe('crash');
    const liar = pids.at(-1)!;
    await until(() => !running(liar), 5000, 'the lying worker to be killed');
    expect(await client.at(small, () => 'fine')).toBe('fine');

    const err = (await client.at(small, hostile({ attack: 'big-error', chars: 60_000 })).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_USER');
    const size = [err.message, err.remote?.name, err.remote?.message, err.remote?.stack, err.remote?.code].reduce((n, s) => n + Buffer.byteLength(s ?? ''), 0);
    expect(size).toBeLessThanOrEqual(1024);

    const target = await client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const caller = await client.spawn({ lifetime: Lifetime.root(), sandbox: { maxMessageBytes: 1024, contacts: [target.id] } });
    const mark = "async (ctx, pad) => { await ctx.ref('hit').set(pad.length); return 'hit'; }";
    expect(await client.at(caller, hostile({ attack: 'call', node: target.id, fn: mark, pad: 8 * 1024 }))).toBe('ERR_TOO_LARGE');
    expect(await client.at(target, (ctx) => ctx.ref('hit').get())).toBeNull();
    // Control: a call within the bound goes through.
    expect(await client.at(caller, hostile({ attack: 'call', node: target.id, fn: mark, pad: 10 }))).toBe('called');
    expect(await client.at(target, (ctx) => ctx.ref('hit').get())).toBe(10);

    // Values each within the bound, together past 4 × maxMessageBytes.
    expect(await codeOf(client.at(small, hostile({ attack: 'big-commit', values: 8, bytes: 1000 })))).toBe('ERR_TOO_LARGE');
    expect(await client.at(small, (ctx) => ctx.index('hoard').entries())).toEqual([]);
  });

  it('is killed for a frame the protocol does not expect (idle with no eval in flight); its node answers on a new worker', async () => {
    const { container, client } = await startContainer({ workerWrapper: HOSTILE, idleTimeoutMs: 120_000 });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    const slept = nextSleep(container, node.id);
    const pid = (await client.at(node, hostile({ attack: 'unsolicited' }))) as number;
    expect(await slept).toBe('crash');
    await until(() => !running(pid), 5000, 'the worker to be killed');
    expect(await client.at(node, () => 'back')).toBe('back');
  });

  it('is killed for a malformed frame in the eval frames\' binary layout; nothing it wrote counts, and its node answers on a new worker', async () => {
    const { container, client } = await startContainer({ workerWrapper: HOSTILE, idleTimeoutMs: 120_000 });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    const id = '0000000000000000'; // the eval's id goes here (idAt: 1)
    const u32 = (n: number) => n.toString(16).padStart(8, '0');
    const ref = (name: string, value: string) => `00${u32(name.length / 2)}${name}${u32(value.length / 2)}${value}`;
    const cases: Record<string, { hex: string; idAt?: number }> = {
      'a value longer than the frame': { hex: `e2${id}${u32(10)}aaaa`, idAt: 1 },
      'bytes past the end (after a well-formed write)': { hex: `e2${id}${u32(1)}01${u32(1)}${ref('6e', '2a')}ff`, idAt: 1 },
      'more writes than bytes': { hex: `e2${id}${u32(0)}${u32(0x7fffffff)}`, idAt: 1 },
      'a write of an unknown kind': { hex: `e2${id}${u32(0)}${u32(1)}07${u32(0)}${u32(0)}`, idAt: 1 },
      'a name that is not UTF-8': { hex: `e2${id}${u32(0)}${u32(1)}${ref('c328', '')}`, idAt: 1 },
      'an id that is not a number': { hex: `e27ff8000000000000${u32(0)}${u32(0)}` },
      'the id of another eval': { hex: `e2${(12345).toString(16).padStart(16, '0')}${u32(0)}${u32(0)}` },
      'an idle with a byte after it': { hex: 'e300' },
    };
    for (const [what, frame] of Object.entries(cases)) {
      const slept = nextSleep(container, node.id);
      expect(await codeOf(client.at(node, hostile({ attack: 'raw-frame', ...frame }))), what).toBe('ERR_WORKER_CRASHED');
      expect(await slept, what).toBe('crash');
    }
    expect(await client.at(node, (ctx) => ctx.ref('n').get())).toBeNull();
    // A well-formed frame in the same layout is taken (the same bytes the real worker writes): a ref write.
    const ok = `e2${id}${u32(1)}01${u32(1)}${ref(Buffer.from('r').toString('hex'), '2a')}`;
    expect(await client.at(node, hostile({ attack: 'raw-frame', hex: [ok, 'e3'], idAt: 1 }))).toBe(1);
    expect(await client.at(node, (ctx) => ctx.ref<number>('r').get())).toBe(42);
  }, 60_000);

  it('is killed when it computes after saying idle, well before it has used 5 CPU-seconds; its node answers on a new worker', async () => {
    const { container, client } = await startContainer({ workerWrapper: HOSTILE, idleTimeoutMs: 120_000 });
    const node = await client.spawn({ lifetime: Lifetime.root() });
    const slept = nextSleep(container, node.id);
    const pid = (await client.at(node, hostile({ attack: 'idle-burn', cpuMs: 5000 }))) as number;
    let lastCpuMs = 0;
    await until(() => {
      lastCpuMs = cpuMsOf(pid) ?? lastCpuMs;
      return !running(pid);
    }, 30_000, 'the burning worker to be killed');
    expect(await slept).toBe('crash');
    // The allowance is 0.5 s plus 1 ms per MB of heap (64 here), read once a second: far from 5 s.
    expect(lastCpuMs).toBeLessThan(3500);
    expect(await client.at(node, () => 'back')).toBe('back');
  }, 60_000);

  it("floods log frames: another tenant's evals stay within 2× of their unloaded p99 (floor 500 ms), nothing is lost, the excess is dropped and counted", async () => {
    const { url, client } = await startContainer({ workerWrapper: HOSTILE });
    const other = Identity.generate();
    await client.grant(other, { maxNodes: 2, maxAwake: 2, memoryMB: 1024 });
    const victimClient = await connect(url, { identity: other });
    defer(() => victimClient.close());
    const victim = await victimClient.spawn({ lifetime: Lifetime.root() });
    const abuser = await client.spawn({ lifetime: Lifetime.root(), sandbox: { timeoutMs: 30_000 } });
    await client.at(abuser, () => 'awake');

    const timed = async (): Promise<number> => {
      const t = performance.now();
      expect(await victimClient.at(victim, () => 1)).toBe(1);
      return performance.now() - t;
    };
    for (let i = 0; i < 10; i++) await timed(); // warm
    const unloaded: number[] = [];
    for (let i = 0; i < 60; i++) unloaded.push(await timed());

    let done = false;
    const flood = client.at(abuser, hostile({ attack: 'flood', ms: 4000 })).then(
      (sent) => ({ sent }),
      (error: unknown) => ({ error }),
    );
    void flood.then(() => (done = true));
    const loaded: number[] = [];
    while (!done) loaded.push(await timed());
    const { sent, error } = (await flood) as { sent?: number; error?: unknown };
    expect(error).toBeUndefined();

    // Judged on the loaded p95 with a 500 ms floor, so one sample the OS scheduler delayed on this shared
    // 2-core machine does not decide; before the fix the flood put the victim's p99 past a second.
    const bound = Math.max(2 * p99(unloaded), 500);
    expect(sent).toBeGreaterThan(1000);
    expect(loaded.length).toBeGreaterThan(5);
    const p95 = [...loaded].sort((a, b) => a - b)[Math.ceil(loaded.length * 0.95) - 1]!;
    expect(p95, `unloaded p99 ${p99(unloaded).toFixed(1)} ms; loaded ${loaded.map((x) => x.toFixed(0)).join(' ')}`).toBeLessThanOrEqual(bound);
    const lines = await allLogs(client, abuser);
    expect(lines.at(-1)).toMatch(/^\[keynode\] \d+ log lines of this eval dropped/);
    expect(await client.at(abuser, () => 'still serving')).toBe('still serving');
  }, 60_000);

  it('performs a ctx.at side effect and exits without saying started: the eval fails with ERR_WORKER_CRASHED and is not run again', async () => {
    const { client } = await startContainer({ workerWrapper: HOSTILE });
    const target = await client.spawn({ lifetime: Lifetime.root(), acl: ['public'] });
    const abuser = await client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: [target.id] } });
    const count = "async (ctx) => { const n = ((await ctx.ref('n').get()) ?? 0) + 1; await ctx.ref('n').set(n); return n; }";
    expect(await codeOf(client.at(abuser, hostile({ attack: 'call', node: target.id, fn: count, exit: true })))).toBe('ERR_WORKER_CRASHED');
    expect(await client.at(target, (ctx) => ctx.ref('n').get())).toBe(1);
    expect(await client.at(abuser, () => 'next')).toBe('next');
  });

  it('renames itself and outlives its container (kill -9): the restarted container kills it, and only it', async () => {
    const data = await tempDir();
    const env = { KEYNODE_WORKER_WRAPPER: HOSTILE };
    const first = await startContainerProcess(data, [], env);
    const admin = await connect(first.url, { identity: first.operator });
    const node = await admin.spawn({ lifetime: Lifetime.root() });
    expect(await admin.at(node, hostile({ attack: 'linger' }))).toBe(0);
    const { pid } = await admin.describe(node);
    killLater(pid!);
    await admin.close();
    // Nothing on its command line says whose it is any more.
    await until(() => !readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('--keynode-data'), 5000, 'the worker to rename itself');

    // A process of someone else that got a recorded pid (here: a record with another start time) is not touched.
    const bystander = execa(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { reject: false });
    killLater(bystander.pid!);
    writeFileSync(join(data, 'workers', String(bystander.pid)), `${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()} 1\n`);

    await first.kill9();
    await until(() => statOf(pid!)?.[1] !== String(first.child.pid), 5000, 'the worker to lose its parent');
    expect(running(pid!)).toBe(true);

    await startContainerProcess(data, [], env);
    await until(() => !running(pid!), 5000, 'the restarted container to kill the orphan');
    expect(running(bystander.pid!)).toBe(true);
  }, 60_000);
});
