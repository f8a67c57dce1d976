/**
 * Types of the shipping API, checked by the compiler (test/types/types.test.ts): every line under
 * `@ts-expect-error` must stay an error, and every other line must compile. Nothing here runs.
 */
import type { Client, Ctx, NodeHandle, NodeRefLike } from 'keynode';

declare const client: Client;
declare const node: NodeHandle;

// The arguments are inferred from the function, the result is the function's, awaited.
export const sum: Promise<number> = client.at(node, (_ctx, x: number, y: string) => x + y.length, 1, 'ab');
export const awaited: Promise<string> = client.at(node, async () => 'text');
export const nested: Promise<{ a: number[] }> = client.at(node, async () => ({ a: [1] }));
// Parameters left unannotated take the types of the arguments given.
export const inferred: Promise<string> = client.at(node, (_ctx, x) => x.toFixed(2), 1.5);
export const values: Promise<Map<string, bigint>> = client.at(node, (_ctx, s: Set<bigint>) => new Map([...s].map((v) => [String(v), v * 2n])), new Set([1n]));

// @ts-expect-error an argument of the wrong type
client.at(node, (_ctx, x: number) => x, 'not a number');
// @ts-expect-error an argument missing
client.at(node, (_ctx, x: number) => x);
// @ts-expect-error an argument too many
client.at(node, (_ctx, x: number) => x, 1, 2);
// @ts-expect-error the result is a string, not a number
export const wrong: Promise<number> = client.at(node, async () => 'text');
// @ts-expect-error the result is awaited: no Promise inside the Promise
export const doubled: Promise<Promise<string>> = client.at(node, async () => 'text');

// `call` takes the arguments as a tuple, with call options.
export const called: Promise<bigint> = client.call(node, (_ctx, a: bigint) => a * 2n, [1n], { signal: AbortSignal.timeout(1000) });
// @ts-expect-error the tuple must match the function's parameters
client.call(node, (_ctx, a: bigint) => a, [1]);

// ctx is typed: what a node offers, nothing else.
client.at(node, async (ctx: Ctx) => {
  const n: number | undefined = await ctx.ref<number>('n').get();
  await ctx.ref<number>('n').set((n ?? 0) + 1);
  const rows: [string, { at: Date }][] = await ctx.index<{ at: Date }>('log').entries({ prefix: 'a', limit: 10 });
  ctx.log('rows', rows.length);
  const here: NodeRefLike = ctx.here;
  const caller: string = ctx.caller;
  const child: NodeRefLike = await ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { refs: 'read' } });
  await ctx.destroy(child);
  return [here.url, caller];
});
// @ts-expect-error ctx has no such member
client.at(node, (ctx) => ctx.process);
// @ts-expect-error a typed ref holds its type
client.at(node, (ctx) => ctx.ref<number>('n').set('text'));
// @ts-expect-error ctx.log is all there is of a logger on ctx
client.at(node, (ctx) => ctx.log.error('x'));
// @ts-expect-error a sandbox option that does not exist
client.at(node, (ctx) => ctx.spawn({ lifetime: ctx.Lifetime.linked(), sandbox: { refs: 'write' } }));
// @ts-expect-error spawn needs a lifetime
client.at(node, (ctx) => ctx.spawn({ sandbox: { refs: 'read' } }));

// ctx.at infers the same way.
client.at(node, (ctx, target: string) => ctx.at(target, (_c, a: number) => a * 2, 21).then((v: number) => v.toFixed()), 'x');
// @ts-expect-error ctx.at checks the arguments against the function
client.at(node, (ctx, target: string) => ctx.at(target, (_c, a: number) => a, 'no'), 'x');
// @ts-expect-error ctx.at's result is the function's, awaited
client.at(node, (ctx, target: string) => ctx.at(target, () => 1).then((v: string) => v), 'x');
