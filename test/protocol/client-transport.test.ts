/**
 * The client's HTTP transport (client/http-post.ts) as a caller sees it: an abort ends a call at once and
 * frees its connection; a reply that breaks off, or a container that is gone, is ERR_UNAVAILABLE.
 */
import { describe, expect, it } from 'vitest';
import { connect, Identity, type KeynodeError } from 'keynode';
import { until } from '../helpers/containers.js';
import { hangingServer } from '../helpers/hanging-server.js';

const NODE = '25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkena';

describe('client transport', () => {
  it('aborts with ERR_ABORTED, and reports a broken or refused connection as ERR_UNAVAILABLE', async () => {
    const hang = await hangingServer();
    const client = await connect(hang.url, { identity: Identity.generate() });
    const node = `${hang.url}/${NODE}`;
    const codeOf = (p: Promise<unknown>) => p.then(() => 'returned', (e: KeynodeError) => e.code);
    try {
      const controller = new AbortController();
      const aborted = codeOf(client.call(node, () => 1, [], { signal: controller.signal }));
      await until(() => hang.open === 1, 10_000, 'the call to be held');
      controller.abort(new Error('enough'));
      expect(await aborted).toBe('ERR_ABORTED');
      // The abort closed the held request's connection: the server sees it go.
      await until(() => hang.open === 0, 10_000, 'the aborted request to close');

      const broken = codeOf(client.at(node, () => 1));
      await until(() => hang.open === 1, 10_000, 'the second call to be held');
      hang.release();
      expect(await broken).toBe('ERR_UNAVAILABLE');

      await hang.close();
      expect(await codeOf(client.at(node, () => 1))).toBe('ERR_UNAVAILABLE');
    } finally {
      await client.close();
    }
  });
});
