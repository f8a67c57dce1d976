/**
 * @module node-worker/analysis
 * The worker's own reading of every function it is asked to run (protocol/function-source.ts): whatever the
 * client checked proves nothing here. Cached by source for the process, so a repeated function costs a map
 * lookup; the verdict does not depend on the node (all nodes have the same globals), only on the text.
 */
import { analyzeFunction, type FunctionAnalysis } from '../protocol/function-source.js';
import { isKeynodeError } from '../protocol/errors.js';
import { hostError } from './host-errors.js';

const MAX_ENTRIES = 512;
const MAX_CHARS = 8 * 1024 * 1024;

let globals: ReadonlySet<string> | undefined;
const cache = new Map<string, FunctionAnalysis | { error: string }>();
let cachedChars = 0;

/** The names on a node's globalThis: the only free names a function may use (set once, at the first Compartment). */
export function setNodeGlobals(names: Iterable<string>): void {
  globals ??= new Set(names);
}

/** The analysis of `source`; a function that fails it throws a genuine ERR_BAD_FUNCTION, every time. */
export function analyzed(source: string): FunctionAnalysis {
  let entry = cache.get(source);
  if (entry) {
    // Most recently used last: the first key is the one to evict.
    cache.delete(source);
    cache.set(source, entry);
  } else {
    const known = globals;
    try {
      entry = analyzeFunction(source, known ? { isGlobal: (n) => known.has(n) } : {});
    } catch (e) {
      if (!isKeynodeError(e)) throw e;
      entry = { error: e.message };
    }
    while (cache.size && (cache.size >= MAX_ENTRIES || cachedChars + source.length > MAX_CHARS)) {
      const oldest = cache.keys().next().value!;
      cache.delete(oldest);
      cachedChars -= oldest.length;
    }
    if (source.length <= MAX_CHARS) {
      cache.set(source, entry);
      cachedChars += source.length;
    }
  }
  if ('error' in entry) throw hostError('ERR_BAD_FUNCTION', entry.error);
  return entry;
}
