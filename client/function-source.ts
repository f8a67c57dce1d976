/**
 * @module client/function-source
 * A function as it is shipped: its source, read and checked here before anything is sent (one function
 * expression, no outside variables, no import()), so a mistake fails at once with its line and column.
 * The node reads it again and is the authority. Checked once per function object and once per source text:
 * an inline arrow passed to every call is a new object each time, but the same text.
 */
import { KeynodeError } from '../protocol/errors.js';
import { analyzeFunction } from '../protocol/function-source.js';

const checkedFunctions = new WeakMap<Function, string>();
const checkedSources = new Map<string, true>();
const MAX_SOURCES = 1000;

export function sourceOf(fn: unknown): string {
  if (typeof fn !== 'function') throw new KeynodeError('ERR_BAD_FUNCTION', 'at(node, fn, ...args): fn must be a function');
  const known = checkedFunctions.get(fn);
  if (known !== undefined) return known;
  const src = Function.prototype.toString.call(fn);
  if (/\[native code\]\s*\}$/.test(src)) {
    throw new KeynodeError('ERR_BAD_FUNCTION', 'the function must be written in source: a native or bound function (fn.bind(...)) has none to ship; pass bound values as arguments instead');
  }
  if (!checkedSources.has(src)) {
    analyzeFunction(src);
    if (checkedSources.size >= MAX_SOURCES) checkedSources.delete(checkedSources.keys().next().value!);
    checkedSources.set(src, true);
  }
  checkedFunctions.set(fn, src);
  return src;
}
