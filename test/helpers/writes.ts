/**
 * The write that move tests run while a node moves: it fails if the same (writer, i) ran before, so a write
 * applied twice (once on the source, again on the target) shows up; it counts, and logs a line a test can find
 * after the move (logs travel with the node). Shipped by source: it uses nothing from this file.
 */
export const exactlyOnceWrite = async (ctx: any, w: number, i: number): Promise<number> => {
  const idx = ctx.index('writes');
  if ((await idx.get(`${w}:${i}`)) !== undefined) throw new Error(`write ${w}:${i} ran twice`);
  await idx.put(`${w}:${i}`, 1);
  const count = ctx.ref('count');
  await count.set(((await count.get()) ?? 0) + 1);
  ctx.log(`write ${w}:${i}`);
  return i;
};
