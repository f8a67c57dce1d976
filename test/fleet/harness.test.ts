/**
 * The multi-host harness leaves nothing behind: namespaces, the bridge, veths, hosts files and the
 * containers in the namespaces go when its process fails, is stopped by a signal, or (swept by the next
 * run) is killed outright. Needs network namespaces; without them it says why and checks nothing else.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { NET_PREFIX, planNetwork, sweepStale } from '../../dist/bench/fleet-net.js';
import { alive } from '../helpers/containers.js';

const NET = fileURLToPath(new URL('../../dist/bench/fleet-net.js', import.meta.url));
const plan = planNetwork();
if (plan.mode !== 'netns') process.stderr.write(`harness cleanup tests not run: no network namespaces here (${plan.why})\n`);

function leftovers(pid: number): string[] {
  const mine = `${NET_PREFIX}-${pid}-`;
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!).filter((ns) => ns.startsWith(mine));
  out.push(...execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(`${NET_PREFIX}b${pid}x`)).map((l) => l.split(':')[1]!.trim()));
  if (existsSync('/etc/netns')) out.push(...readdirSync('/etc/netns').filter((d) => d.startsWith(mine)));
  return out;
}

/** A process that makes a network of two namespaces with a process in one, says so, then ends as `how` says. */
function run(how: 'throw' | 'SIGTERM' | 'SIGKILL') {
  const script = `
    import { makeNetwork } from ${JSON.stringify(NET)};
    import { spawn } from 'node:child_process';
    const net = makeNetwork(2);
    const sleeper = spawn('ip', ['netns', 'exec', net.namespaces[0], 'sleep', '600'], { stdio: 'ignore' });
    sleeper.unref();
    console.log(JSON.stringify({ pid: process.pid, sleeper: sleeper.pid, ns: net.namespaces }));
    setTimeout(() => {
      if (${JSON.stringify(how)} === 'throw') throw new Error('a test failed');
      process.kill(process.pid, ${JSON.stringify(how)});
    }, 100);
    setTimeout(() => {}, 60_000);
  `;
  return execa(process.execPath, ['--input-type=module', '-e', script], { reject: false, timeout: 60_000 });
}

describe.skipIf(plan.mode !== 'netns')('the multi-host harness cleans up', () => {
  it.each(['throw', 'SIGTERM'] as const)('when its process ends by %s', async (how) => {
    const r = await run(how);
    const { pid, ns, sleeper } = JSON.parse(r.stdout.split('\n')[0]!) as { pid: number; ns: string[]; sleeper: number };
    // Not a container of the harness's own: this test ends it.
    process.kill(sleeper, 'SIGKILL');
    expect(ns).toHaveLength(2);
    expect(how === 'throw' ? r.exitCode : r.signal).toBe(how === 'throw' ? 1 : 'SIGTERM');
    expect(leftovers(pid)).toEqual([]);
  });

  it('after a kill -9, the next run sweeps what it left, processes in its namespaces included', async () => {
    const r = await run('SIGKILL');
    const { pid, sleeper } = JSON.parse(r.stdout.split('\n')[0]!) as { pid: number; sleeper: number };
    expect(r.signal).toBe('SIGKILL');
    expect(leftovers(pid).length).toBeGreaterThan(0);
    sweepStale();
    expect(leftovers(pid)).toEqual([]);
    for (let i = 0; i < 100 && alive(sleeper); i++) await new Promise((res) => setTimeout(res, 20));
    expect(alive(sleeper)).toBe(false);
  });
});
