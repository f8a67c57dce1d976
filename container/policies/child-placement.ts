/**
 * @module container/policies/child-placement
 * Where a node's child lives (ctx.spawn's `placement`): next to its parent, on the parent's container. A
 * child is part of its parent's budget tree, which this container keeps, and its key is held where it
 * lives; so `near` the parent (or any node here), `on` this container, or 'load' all mean here, and a
 * placement naming another container is refused with a pointer rather than ignored.
 */
import { KeynodeError, originOf, resolveNode } from '../../protocol/index.js';

/** The spawn spec without its placement, once the placement is checked to mean this container (`origin`). */
export function placeChild(spec: unknown, origin: string): unknown {
  if (typeof spec !== 'object' || spec === null || !Object.hasOwn(spec, 'placement')) return spec;
  const { placement, ...rest } = spec as Record<string, unknown>;
  if (placement === undefined || placement === 'load') return rest;
  let there: string | undefined;
  if (typeof placement === 'object' && placement !== null && Object.hasOwn(placement, 'on')) there = originOf((placement as { on: unknown }).on);
  else if (typeof placement === 'object' && placement !== null && Object.hasOwn(placement, 'near')) {
    const near = (placement as { near: unknown }).near;
    try {
      const { url } = resolveNode(near as string);
      // A bare node ID names a node of this container.
      there = url === undefined ? origin : originOf(url);
    } catch {
      there = undefined;
    }
  } else throw new KeynodeError('ERR_BAD_POLICY', "ctx.spawn: `placement` is 'load', { near: node } or { on: url }");
  if (there === undefined) throw new KeynodeError('ERR_BAD_POLICY', 'ctx.spawn: `placement` names no container (give a node, a node URL or a container URL)');
  if (there !== origin) {
    throw new KeynodeError('ERR_BAD_POLICY', `ctx.spawn places children on their parent's container (${origin}); ${there} is another. Spawn there from a client (placement: { on }) and pass the node in`);
  }
  return rest;
}
