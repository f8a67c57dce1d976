/**
 * /metrics: keynode's own metrics and Node's default ones, each prefixed once (keynode_process_cpu_seconds_total,
 * not keynode_process_process_cpu_seconds_total).
 */
import { describe, expect, it } from 'vitest';
import { startContainer } from '../helpers/containers.js';

describe('metrics', () => {
  it('names every metric with the keynode_ prefix once', async () => {
    const { url } = await startContainer();
    const text = await (await fetch(`${url}/metrics`)).text();
    const names = new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!));
    expect(names).toContain('keynode_process_cpu_seconds_total');
    expect(names).toContain('keynode_nodejs_heap_size_used_bytes');
    expect(names).toContain('keynode_requests_total');
    expect([...names].filter((n) => !n.startsWith('keynode_') || /^keynode_(process_process|nodejs_nodejs|keynode)_/.test(n))).toEqual([]);
  });
});
