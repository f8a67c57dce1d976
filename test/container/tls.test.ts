/**
 * The container over HTTPS (`keynode start --tls-cert --tls-key`, or the options), with a certificate this
 * test makes with openssl: the library connects with the CA option and everything works as over HTTP (spawn,
 * at, describe, logs, destroy, ctx.at between two HTTPS containers); without the CA the client refuses the
 * container, and nothing is served in clear on the port.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { connect, Lifetime, type KeynodeError } from 'keynode';
import { defer, startContainer, startContainerProcess, tempDir } from '../helpers/containers.js';

let dir: string;
let cert: Buffer;
let files: { cert: string; key: string };

beforeAll(async () => {
  dir = await tempDir('keynode-tls-');
  files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  const config = join(dir, 'openssl.cnf');
  await writeFile(config, '[req]\ndistinguished_name=dn\nx509_extensions=ext\nprompt=no\n[dn]\nCN=127.0.0.1\n[ext]\nsubjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:TRUE\nkeyUsage=digitalSignature,keyCertSign\nextendedKeyUsage=serverAuth\n');
  await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-keyout', files.key, '-out', files.cert, '-config', config]);
  cert = await readFile(files.cert);
});

describe('TLS', () => {
  it('the whole library works over HTTPS with the CA option, across two containers too', async () => {
    const a = await startContainer({ tlsCert: files.cert, tlsKey: files.key, tlsCa: files.cert });
    const b = await startContainer({ tlsCert: files.cert, tlsKey: files.key, tlsCa: files.cert });
    expect(a.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const client = await connect(a.url, { identity: a.operator, ca: cert });
    defer(() => client.close());
    const caller = await client.spawn({ lifetime: Lifetime.root(), sandbox: { contacts: 'any', log: true } });
    expect(caller.url).toBe(`${a.url}/${caller.id}`);
    expect(await client.at(caller, async (ctx, x: number) => {
      ctx.log('over tls');
      await ctx.ref('x').set(x);
      return (await ctx.ref<number>('x').get())! * 2;
    }, 21)).toBe(42);
    expect((await client.describe(caller)).status).not.toBe('asleep');
    expect((await client.logs(caller)).map((l) => l.line)).toEqual(['over tls']);

    // ctx.at from a node on A to a node on B: container A's session with B runs over TLS, trusting tlsCa.
    const bClient = await connect(b.url, { identity: b.operator, ca: cert });
    defer(() => bClient.close());
    const callee = await bClient.spawn({ lifetime: Lifetime.root(), acl: [caller.url] });
    expect(await client.at(caller, (ctx, url: string) => ctx.at(url, (inner) => `B saw ${inner.caller}`), callee.url)).toBe(`B saw ${caller.id}`);

    await client.destroy(caller);
    expect(((await client.describe(caller).catch((e: unknown) => e)) as KeynodeError).code).toBe('ERR_NODE_DESTROYED');
  });

  it('without the CA the client refuses the container; plain HTTP gets no keynode answer', async () => {
    const c = await startContainer({ tlsCert: files.cert, tlsKey: files.key });
    const err = (await connect(c.url).catch((e: unknown) => e)) as KeynodeError;
    expect(err.code).toBe('ERR_UNAVAILABLE');
    expect(err.message).toMatch(/certificate/i);
    const plain = await request(c.url.replace('https:', 'http:') + '/.well-known/keynode').then((r) => r.body.text().then((t) => `${r.statusCode} ${t}`), (e: Error) => `failed: ${e.message}`);
    expect(plain).not.toMatch(/containerId/);
  });

  it('keynode start --tls-cert --tls-key serves https:// node URLs', async () => {
    const data = await tempDir();
    const proc = await startContainerProcess(data, ['--tls-cert', files.cert, '--tls-key', files.key]);
    expect(proc.url).toMatch(/^https:\/\//);
    const client = await connect(proc.url, { identity: proc.operator, ca: cert });
    defer(() => client.close());
    const node = await client.spawn({ lifetime: Lifetime.root() });
    expect(node.url.startsWith(`${proc.url}/`)).toBe(true);
    expect(await client.at(node, () => 'secure')).toBe('secure');
    await client.close();
    await proc.stop();
  });
});
