/**
 * The operator's dashboard in a real browser (Debian's Chromium through playwright-core): opened with a
 * link from `keynode dashboard`, it shows counts that change under load, rows for new nodes, a node's log
 * lines as they are written, and destroys a node after a confirmation. Without a session the API says 401.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { connect, Identity, isKeynodeError, Lifetime } from 'keynode';
import { Container } from 'keynode/container';
import { launchBrowser } from '../helpers/browser.js';
import { defer, tempDir } from '../helpers/containers.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

async function link(url: string, identity: string, ...flags: string[]): Promise<string> {
  const r = await execa(process.execPath, [CLI, 'dashboard', '--url', url, '--identity', identity, ...flags], { reject: false });
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe('dashboard', () => {
  it('shows the container live in a browser, streams a log, destroys with confirmation, and refuses requests without a session', async () => {
    const data = await tempDir();
    let logged = '';
    const logger = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _enc, done) => void ((logged += chunk.toString()), done()) }));
    const container = await Container.start({ port: 0, data, logLevel: 'debug', poolMin: 1, idleTimeoutMs: 60_000 }, logger);
    defer(() => container.close());
    const client = await connect(container.url, { identity: container.operator });
    defer(() => client.close());
    const operatorKey = join(data, 'operator.key');

    // Without a session: the static shell loads (it holds no data), every API route answers 401.
    for (const path of ['/dashboard/api/live', '/dashboard/api/nodes', '/dashboard/api/budgets']) {
      const res = await fetch(`${container.url}${path}`);
      expect(res.status, path).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_UNAUTHENTICATED');
    }
    const forged = await fetch(`${container.url}/dashboard/api/nodes`, { headers: { cookie: 'keynode_session=made-up' } });
    expect(forged.status).toBe(401);

    // A link signed by another key opens nothing.
    const strangerKey = join(data, 'stranger.key');
    await Identity.generate().save(strangerKey);
    const strangerLink = await link(container.url, strangerKey);
    const refused = await fetch(`${container.url}/dashboard/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-keynode-dashboard': '1' },
      body: JSON.stringify({ token: strangerLink.split('#token=')[1] }),
    });
    expect(refused.status).toBe(401);

    const asleep = await client.spawnMany(3, { lifetime: Lifetime.root() });
    const url = await link(container.url, operatorKey);
    const token = url.split('#token=')[1]!;

    const browser = await launchBrowser();
    const context = await browser.newContext({ viewport: { width: 1400, height: 1200 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.locator('[data-testid=connection]', { hasText: 'live' }).waitFor();
    expect(page.url()).not.toContain('token='); // the token left the address bar once it was used
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'keynode_session')!;
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/dashboard' });

    // The same link does not open a second session.
    const again = await fetch(`${container.url}/dashboard/session`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-keynode-dashboard': '1' }, body: JSON.stringify({ token }) });
    expect(again.status).toBe(401);
    expect(((await again.json()) as { error: { message: string } }).error.message).toContain('used already');

    const awake = page.getByTestId('awake');
    const sleeping = page.getByTestId('sleeping');
    await expect.poll(() => sleeping.textContent(), { timeout: 20_000 }).toBe('3');
    await expect.poll(() => awake.textContent(), { timeout: 20_000 }).toBe('0');

    // Load: wake two nodes and keep evaluating on them; the counts and rates move.
    const busy = await client.spawnMany(2, { lifetime: Lifetime.root() });
    let loading = true;
    const load = Promise.all(busy.map(async (n) => {
      while (loading) await client.at(n, () => 1);
    }));
    await expect.poll(() => awake.textContent(), { timeout: 20_000 }).toBe('2');
    await expect.poll(async () => Number((await page.getByTestId('evals').textContent())?.replace(/,/g, '')), { timeout: 20_000 }).toBeGreaterThan(0);
    await expect.poll(async () => (await page.getByTestId('latency').textContent()) ?? '', { timeout: 20_000 }).toMatch(/^\d/);
    await expect.poll(async () => (await page.getByTestId('wakes').textContent()) ?? '', { timeout: 20_000 }).not.toBe('–');
    loading = false;
    await load;

    // A node spawned now gets its row; selecting it follows its log as lines are written.
    const fresh = await client.spawn({ lifetime: Lifetime.root() });
    const row = page.locator(`tr[data-id="${fresh.id}"]`);
    await row.waitFor({ timeout: 20_000 });
    await page.getByTestId('search').fill(fresh.id.slice(0, 8));
    await expect.poll(() => page.locator('[data-testid=nodes] tbody tr').count(), { timeout: 20_000 }).toBe(1);
    await row.click();
    await page.getByTestId('detail').waitFor();
    await expect.poll(async () => (await page.locator('#log-state').textContent()) ?? '', { timeout: 20_000 }).toBe('following');
    await client.at(fresh, (ctx) => ctx.log('streamed from the node', 42));
    await page.getByTestId('log').filter({ hasText: 'streamed from the node 42' }).waitFor({ timeout: 20_000 });
    await expect.poll(async () => (await row.locator('td').nth(1).textContent()) ?? '', { timeout: 20_000 }).toMatch(/idle|active/);

    const shots = join(data, 'screenshots');
    await mkdir(shots);
    await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });
    expect((await stat(join(shots, 'dashboard.png'))).size).toBeGreaterThan(10_000);

    // Destroy asks first: dismissed, nothing happens; accepted, the node is gone.
    page.once('dialog', (d) => void d.dismiss());
    await page.getByTestId('destroy').click();
    expect((await client.describe(fresh)).id).toBe(fresh.id);
    page.once('dialog', (d) => {
      expect(d.message()).toContain(fresh.id);
      void d.accept();
    });
    await page.getByTestId('destroy').click();
    await page.getByTestId('detail').waitFor({ state: 'hidden' });
    const gone = await client.describe(fresh).catch((e: unknown) => e);
    expect(isKeynodeError(gone) && gone.code).toBe('ERR_NODE_DESTROYED');
    await row.waitFor({ state: 'detached' });

    // What the page was sent: no node state, no code, no key.
    const detail = await page.evaluate(async (id) => (await fetch(`/dashboard/api/nodes/${id}`)).text(), asleep[0]!.id);
    expect(detail).toContain(asleep[0]!.id);
    expect(detail).not.toContain('secretKey');
    expect(detail).not.toContain('sealedKey');

    // Destroy needs the page's header and the node named again: a bare cross-site style POST does nothing.
    const bare = await page.evaluate(async (id) => (await fetch(`/dashboard/api/nodes/${id}/destroy`, { method: 'POST' })).status, asleep[0]!.id);
    expect(bare).toBe(403);
    expect((await client.describe(asleep[0]!)).id).toBe(asleep[0]!.id);

    // Signing out ends the session.
    await page.locator('#logout').click();
    await page.getByTestId('auth').waitFor();
    expect(await page.evaluate(async () => (await fetch('/dashboard/api/nodes')).status)).toBe(401);

    expect(errors).toEqual([]);
    expect(logged).toContain('dashboard: a session was opened');
    expect(logged).not.toContain(token);
    expect(logged).not.toContain(token.split('.')[1]!);
  });

  it('expired links and links for another container open nothing; --dashboard off removes the routes', async () => {
    const data = await tempDir();
    const container = await Container.start({ port: 0, data, logLevel: 'silent', poolMin: 0 });
    defer(() => container.close());
    const { makeLinkToken } = (await import(fileURLToPath(new URL('../../dist/container/edge/dashboard/sessions.js', import.meta.url)))) as typeof import('../../container/edge/dashboard/sessions.js');
    const open = (token: string) =>
      fetch(`${container.url}/dashboard/session`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-keynode-dashboard': '1' }, body: JSON.stringify({ token }) });
    const sign = (m: Uint8Array) => container.operator.sign(m);
    const expired = await open(makeLinkToken({ v: 1, c: container.id, exp: Date.now() - 1000, n: 'a'.repeat(32) }, sign));
    expect(expired.status).toBe(401);
    expect(((await expired.json()) as { error: { message: string } }).error.message).toContain('expired');
    const elsewhere = await open(makeLinkToken({ v: 1, c: Identity.generate().id, exp: Date.now() + 60_000, n: 'b'.repeat(32) }, sign));
    expect(elsewhere.status).toBe(401);
    const forever = await open(makeLinkToken({ v: 1, c: container.id, exp: Date.now() + 86_400_000, n: 'c'.repeat(32) }, sign));
    expect(forever.status).toBe(401);
    const good = await open(makeLinkToken({ v: 1, c: container.id, exp: Date.now() + 60_000, n: 'd'.repeat(32) }, sign));
    expect(good.status).toBe(204);
    const cookie = good.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^keynode_session=[A-Za-z0-9_-]{43}; Path=\/dashboard; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    const withCookie = await fetch(`${container.url}/dashboard/api/nodes`, { headers: { cookie: cookie.split(';')[0]! } });
    expect(withCookie.status).toBe(200);
    // Without the page's header, even the right link is refused (another site's form cannot post one).
    const bare = await fetch(`${container.url}/dashboard/session`, { method: 'POST', body: JSON.stringify({ token: 'x.y' }) });
    expect(bare.status).toBe(403);
    const ttl = await execa(process.execPath, [CLI, 'dashboard', '--url', container.url, '--identity', join(data, 'operator.key'), '--ttl', '0'], { reject: false });
    expect(ttl.exitCode).toBe(2);

    const off = await Container.start({ port: 0, data: await tempDir(), logLevel: 'silent', poolMin: 0, dashboard: 'off' });
    defer(() => off.close());
    for (const path of ['/dashboard/', '/dashboard/api/nodes']) expect((await fetch(`${off.url}${path}`)).status, path).toBe(404);
  });

  it('estimates the node count of a big directory from how far the first keys reach', async () => {
    const { estimateFromPosition } = (await import(fileURLToPath(new URL('../../dist/container/edge/dashboard/live.js', import.meta.url)))) as typeof import('../../container/edge/dashboard/live.js');
    // In byte order '2'..'7' come before 'a'..'z': 'c' starts the ninth of 32 slices, a quarter of the way.
    expect(estimateFromPosition(50_000, `c${'2'.repeat(51)}`)).toBe(200_000);
    expect(estimateFromPosition(50_000, `a${'2'.repeat(51)}`)).toBe(Math.round(50_000 / (6 / 32)));
    expect(estimateFromPosition(10, '2'.repeat(52))).toBe(10);
  });
});
