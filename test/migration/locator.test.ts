/**
 * The fleet lookup on its own (its peers' answers are functions here): the container that has the node
 * settles it at once whatever other peers do; hostile answers are ignored; lookups in flight are bounded.
 */
import { describe, expect, it } from 'vitest';
import { Identity } from 'keynode';
import { Locator } from '../../dist/container/migration/locator.js';
import { KeynodeError } from '../../dist/protocol/index.js';

const SELF = 'http://127.0.0.1:1';
const P1 = 'http://127.0.0.1:2';
const P2 = 'http://127.0.0.1:3';
const P3 = 'http://127.0.0.1:4';

describe('fleet lookup', () => {
  it('the container that has the node answers for it, even while another peer hangs', async () => {
    const id = Identity.generate().id;
    const asked: string[] = [];
    const locator = new Locator({
      self: SELF,
      peers: () => [P1, P2],
      ask: (origin) => {
        asked.push(origin);
        return origin === P1 ? new Promise(() => {}) : Promise.resolve({ url: `${P2}/${id}` });
      },
    });
    expect(await locator.locate(id)).toBe(`${P2}/${id}`);
    // Cached: no peer is asked again.
    expect(await locator.locate(id)).toBe(`${P2}/${id}`);
    expect(asked).toEqual([P1, P2]);
  });

  it("a forwarding record counts when no peer has the node; answers for another node, or back here, are ignored", async () => {
    const id = Identity.generate().id;
    const other = Identity.generate().id;
    const locator = new Locator({
      self: SELF,
      peers: () => [P1, P2, P3],
      ask: async (origin) => {
        if (origin === P1) return { url: `${P3}/${id}` }; // P1 forwards to P3, which is down
        if (origin === P2) return { url: `${P2}/${other}` }; // a hostile peer names another node
        throw new KeynodeError('ERR_UNAVAILABLE', 'down');
      },
    });
    expect(await locator.locate(id)).toBe(`${P3}/${id}`);
    const back = new Locator({ self: SELF, peers: () => [P1], ask: async () => ({ url: `${SELF}/${id}` }) });
    expect(await back.locate(id)).toBeUndefined();
    const garbage = new Locator({ self: SELF, peers: () => [P1], ask: async () => ({ url: 'not a url' }) });
    expect(await garbage.locate(id)).toBeUndefined();
  });

  it('lookups in flight are bounded: past the bound, ERR_OVERLOADED', async () => {
    const locator = new Locator({ self: SELF, peers: () => [P1], ask: () => new Promise(() => {}), maxInFlight: 2 });
    void locator.locate(Identity.generate().id);
    void locator.locate(Identity.generate().id);
    await expect(locator.locate(Identity.generate().id)).rejects.toMatchObject({ code: 'ERR_OVERLOADED' });
  });
});
