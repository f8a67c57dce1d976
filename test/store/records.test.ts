import { describe, expect, it } from 'vitest';
import { decode } from '../../dist/protocol/index.js';
import { encodeRecord, RecordTemplate, type NodeRecord } from '../../dist/store/records.js';

const ID = (c: string) => c.repeat(52);

function record(over: Partial<NodeRecord> = {}): NodeRecord {
  return {
    id: ID('a'),
    parent: ID('p'),
    ancestors: [ID('p')],
    lifetime: { kind: 'root' },
    sandbox: { refs: 'readwrite', spawn: false, contacts: [ID('q')], capabilities: {}, memoryMB: 64, timeoutMs: 5000, maxMessageBytes: 1 << 20, log: true },
    acl: ['public'],
    budget: { maxNodes: 0, maxAwake: 10, memoryMB: 640 },
    createdAt: 1_700_000_000_000,
    sealedKey: new Uint8Array(60).fill(7),
    ...over,
  } as NodeRecord;
}

describe('record template', () => {
  it('gives the bytes encodeRecord gives, for sealed and ephemeral records', () => {
    const sealed = new Uint8Array(60).map((_, i) => i);
    const t = RecordTemplate.of(record())!;
    expect(t.encode(ID('b'), sealed)).toEqual(encodeRecord(record({ id: ID('b'), sealedKey: sealed })));
    expect(decode(t.encode(ID('c'), sealed))).toEqual(record({ id: ID('c'), sealedKey: sealed }));

    const eph = record({ lifetime: { kind: 'ephemeral' }, boot: 123 });
    delete eph.sealedKey;
    const te = RecordTemplate.of(eph)!;
    expect(te.encode(ID('d'))).toEqual(encodeRecord({ ...eph, id: ID('d') }));
  });

  it('encodes a batch as views of one buffer, each the bytes encodeRecord gives', () => {
    const keys = [1, 2, 3].map((k) => new Uint8Array(60).fill(k));
    const all = RecordTemplate.of(record())!.encodeAll(['b', 'c', 'd'].map((c, i) => ({ id: ID(c), sealedKey: keys[i] })));
    expect(all.map((b) => b.buffer).every((b) => b === all[0]!.buffer)).toBe(true);
    ['b', 'c', 'd'].forEach((c, i) => expect(all[i]).toEqual(encodeRecord(record({ id: ID(c), sealedKey: keys[i] }))));
  });

  it('refuses to guess when a placeholder could be confused with the record’s own data', () => {
    expect(RecordTemplate.of(record({ acl: ['0'.repeat(52)] as never }))).toBeUndefined();
    expect(() => RecordTemplate.of(record())!.encode('short', new Uint8Array(60))).toThrow();
    expect(() => RecordTemplate.of(record())!.encode(ID('b'))).toThrow();
  });
});
