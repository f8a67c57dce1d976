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
});
