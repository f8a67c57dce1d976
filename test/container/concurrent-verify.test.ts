/**
 * Signatures checked while other requests are in hand go to the threadpool (container/edge/server.ts): the
 * answers must be exactly those of the inline check, replays included.
 */
import { decode as msgpackDecode, encode as msgpackEncode } from '@msgpack/msgpack';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { Identity, Lifetime } from 'keynode';
import { encode, sealEnvelope } from '../../dist/protocol/index.js';
import { startContainer } from '../helpers/containers.js';

const INCREMENT = 'async (ctx) => { const r = ctx.ref("n"); const n = ((await r.get()) ?? 0) + 1; await r.set(n); return n; }';

describe('signatures checked off the event loop', () => {
  it('many at once: good ones run once each, forged ones are refused, a replay sent alongside its original runs once', async () => {
    const { url, client, operator } = await startContainer();
    const node = await client.spawn({ lifetime: Lifetime.root() });
    const post = async (body: Uint8Array) => {
      const res = await request(`${url}/${node.id}`, { method: 'POST', body, headers: { 'content-type': 'application/msgpack' } });
      return (msgpackDecode(new Uint8Array(await res.body.arrayBuffer())) as { ok: boolean; error?: { code: string } });
    };
    const good = () => sealEnvelope(operator, 'eval', node.id, { fn: INCREMENT, args: encode([]) }, Date.now(), client.containerId);
    const forged = () => {
      const map = msgpackDecode(sealEnvelope(Identity.generate(), 'eval', node.id, { fn: INCREMENT, args: encode([]) }, Date.now(), client.containerId)) as Record<string, unknown>;
      map.from = operator.id;
      return msgpackEncode(map);
    };
    const twice = good();
    const bodies = [...Array.from({ length: 20 }, good), ...Array.from({ length: 20 }, forged), twice, twice];
    const answers = await Promise.all(bodies.map(post));
    const codes = answers.map((a) => (a.ok ? 'ok' : a.error!.code));
    expect(codes.slice(0, 20)).toEqual(Array(20).fill('ok'));
    expect(codes.slice(20, 40)).toEqual(Array(20).fill('ERR_BAD_SIGNATURE'));
    expect(codes.slice(40).sort()).toEqual(['ERR_REPLAY', 'ok']);
    expect(await client.at(node, (ctx) => ctx.ref('n').get())).toBe(21);
  });
});
