/**
 * Small helpers shared by the policy tests. No mocks: everything here talks to a real container.
 */
import type { Client, KeynodeError, NodeInfo } from 'keynode';

/** The error a call fails with; a call that succeeds fails the test instead. */
export async function failure(p: Promise<unknown>): Promise<KeynodeError> {
  return p.then(
    (v) => {
      throw new Error(`expected the call to fail, but it returned ${JSON.stringify(v)}`);
    },
    (e: unknown) => e as KeynodeError,
  );
}

/** Every node the container has (operator only). */
export async function allNodes(operator: Client): Promise<NodeInfo[]> {
  return ((await operator.request('list', { limit: 10_000 })) as { nodes: NodeInfo[] }).nodes;
}

/** IDs of the nodes whose parent is `parent`, sorted. */
export async function childrenOf(operator: Client, parent: string): Promise<string[]> {
  return (await allNodes(operator)).filter((n) => n.parent === parent).map((n) => n.id).sort();
}
