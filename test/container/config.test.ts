import { describe, expect, it } from 'vitest';
import { DEFAULTS, normalizeOptions, optionsFromEnv, type KeynodeError } from 'keynode/container';

describe('container options', () => {
  it('reads KEYNODE_* variables named after each option', () => {
    const o = optionsFromEnv({
      KEYNODE_PORT: '8080',
      KEYNODE_IDLE_TIMEOUT_MS: '1234',
      KEYNODE_MEMORY_MB: '128',
      KEYNODE_RSS_OVERHEAD_MB: '50',
      KEYNODE_HOLD_GRACE_MS: '999',
      KEYNODE_FSYNC: 'true',
      KEYNODE_DATA: '/tmp/x',
      KEYNODE_CAPACITY_AWAKE: '7',
    });
    expect(o).toEqual({ port: 8080, idleTimeoutMs: 1234, memoryMB: 128, rssOverheadMB: 50, holdGraceMs: 999, fsync: true, data: '/tmp/x', capacity: { ...DEFAULTS.capacity, maxAwake: 7 } });
  });

  it('rejects unknown and out-of-range options with a pointer', () => {
    const codes = [{ prot: 1 }, { port: -1 }, { port: 70000 }, { idleTimeoutMs: 1.5 }, { evalTimeoutMs: 10, maxEvalTimeoutMs: 5 }, { memoryMB: 8 }].map((bad) => {
      try {
        normalizeOptions(bad as never);
        return 'accepted';
      } catch (e) {
        return (e as KeynodeError).code;
      }
    });
    expect(codes).toEqual(Array(6).fill('ERR_BAD_POLICY'));
  });

  it('worker reuse and pool options: validated, read from KEYNODE_*, and the old poolSize is refused with its new name', () => {
    expect(optionsFromEnv({ KEYNODE_WORKER_REUSE: 'off', KEYNODE_WORKER_MAX_NODES: '50', KEYNODE_POOL_MIN: '1', KEYNODE_POOL_MAX: '3', KEYNODE_MAX_SPARE_WORKERS: '0' })).toEqual({
      workerReuse: 'off', workerMaxNodes: 50, poolMin: 1, poolMax: 3, maxSpareWorkers: 0,
    });
    expect(() => optionsFromEnv({ KEYNODE_POOL_SIZE: '4' })).toThrow(/KEYNODE_POOL_MIN/);
    expect(() => normalizeOptions({ poolSize: 4 } as never)).toThrow(/poolMin/);
    expect(() => normalizeOptions({ workerReuse: 'always' as 'off' })).toThrow(/workerReuse/);
    expect(() => normalizeOptions({ poolMin: 5, poolMax: 2 })).toThrow(/poolMin/);
    expect(() => normalizeOptions({ workerMaxNodes: 0 })).toThrow(/workerMaxNodes/);
    // A floor above the default ceiling lifts the ceiling when none is given.
    expect(normalizeOptions({ poolMin: 12 }).poolMax).toBe(12);
    expect(DEFAULTS.workerReuse).toBe('tenant');
  });

  it('outgoing shares per peer: read from KEYNODE_*, and a tenant share larger than the peer total is refused', () => {
    expect(optionsFromEnv({ KEYNODE_PEER_CONNECTIONS: '64', KEYNODE_PEER_TENANT_REQUESTS: '8', KEYNODE_PEER_TENANT_QUEUE: '32' })).toEqual({ peerConnections: 64, peerTenantRequests: 8, peerTenantQueue: 32 });
    expect(() => normalizeOptions({ peerConnections: 8, peerTenantRequests: 16 })).toThrow(/peerTenantRequests/);
    expect(normalizeOptions({ peerTenantQueue: 0 }).peerTenantQueue).toBe(0); // past its share a call is refused at once
    expect(() => normalizeOptions({ peerTenantQueue: -1 })).toThrow(/peerTenantQueue/);
    expect(DEFAULTS.peerTenantRequests).toBeLessThan(DEFAULTS.peerConnections);
  });

  it('capacity.storageMB: 10 GiB by default, fractions allowed, from KEYNODE_CAPACITY_STORAGE_MB, and filled in when a capacity names only the other three', () => {
    expect(DEFAULTS.capacity.storageMB).toBe(10_240);
    expect(optionsFromEnv({ KEYNODE_CAPACITY_STORAGE_MB: '0.5' }).capacity).toEqual({ ...DEFAULTS.capacity, storageMB: 0.5 });
    expect(normalizeOptions({ capacity: { maxNodes: 10, maxAwake: 1, memoryMB: 64 } }).capacity.storageMB).toBe(10_240);
    expect(normalizeOptions({ capacity: { maxNodes: 10, maxAwake: 1, memoryMB: 64, storageMB: 2.5 } }).capacity.storageMB).toBe(2.5);
    for (const storageMB of [-1, Infinity, Number.NaN, '5' as unknown as number]) {
      expect(() => normalizeOptions({ capacity: { ...DEFAULTS.capacity, storageMB } })).toThrow(/capacity.storageMB/);
    }
  });
});
