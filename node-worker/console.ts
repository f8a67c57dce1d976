/**
 * @module node-worker/console
 * `console` for a node's code: each call is one line of the running eval's log (kept when the node's
 * sandbox has `log: true`, dropped otherwise, and dropped after the eval returned), formatted like Node's
 * console (printf-style `%s %d %i %f %j %o %O %c`, then the rest of the arguments, objects as JSON).
 * One object for the whole process, hardened; its counters, timers and group indent start empty at every
 * eval, so nothing carries from one eval, or one node, to the next.
 */
import { formatLogArgs } from './context.js';

declare function harden<T>(value: T): T;

function safe<T>(f: () => T, fallback: T): T {
  try {
    return f();
  } catch {
    return fallback;
  }
}

/** Node's substitutions, applied to a first argument that is a string. */
export function formatConsole(args: unknown[]): string {
  const first = args[0];
  if (typeof first !== 'string' || !first.includes('%')) return formatLogArgs(args);
  let next = 1;
  const head = first.replace(/%([sdifjoOc%])/g, (whole, c: string) => {
    if (c === '%') return '%';
    if (next >= args.length) return whole;
    const a = args[next++];
    switch (c) {
      case 's':
        return typeof a === 'string' ? a : typeof a === 'bigint' ? `${a}n` : typeof a === 'object' && a !== null ? formatLogArgs([a]) : safe(() => String(a), '[unprintable]');
      case 'd':
      case 'i': {
        if (typeof a === 'bigint') return `${a}n`;
        const n = safe(() => Number(a), NaN);
        return String(c === 'i' ? Math.trunc(n) : n);
      }
      case 'f':
        return String(safe(() => parseFloat(String(a)), NaN));
      case 'c':
        return '';
      default:
        return formatLogArgs([a]);
    }
  });
  return formatLogArgs([head, ...args.slice(next)]);
}

export interface NodeConsole {
  readonly console: object;
  /** Forgets counters, timers and indentation: called as each eval starts. */
  reset(): void;
}

/** `write` appends a line to the running eval's log, or drops it. */
export function makeConsole(write: (line: string) => void, now: () => number): NodeConsole {
  let counts = new Map<string, number>();
  let timers = new Map<string, number>();
  let indent = '';
  const line = (prefix: string, args: unknown[]) => {
    const text = prefix + formatConsole(args);
    write(indent ? text.replace(/^/gm, indent) : text);
  };
  const at = (prefix: string) => (...args: unknown[]) => line(prefix, args);
  const label = (l: unknown) => (l === undefined ? 'default' : safe(() => String(l), 'default'));
  const console = {
    log: at(''),
    info: at(''),
    debug: at(''),
    warn: at(''),
    error: at(''),
    trace: (...args: unknown[]) => line('Trace: ', args),
    dir: (value: unknown) => line('', [value]),
    dirxml: at(''),
    table: (data: unknown) => line('', [data]),
    assert: (condition: unknown, ...args: unknown[]) => {
      if (condition) return;
      if (!args.length) line('Assertion failed', []);
      else if (typeof args[0] === 'string') line('', [`Assertion failed: ${args[0]}`, ...args.slice(1)]);
      else line('', ['Assertion failed:', ...args]);
    },
    count: (l?: unknown) => {
      const k = label(l);
      const n = (counts.get(k) ?? 0) + 1;
      counts.set(k, n);
      line('', [`${k}: ${n}`]);
    },
    countReset: (l?: unknown) => void counts.delete(label(l)),
    time: (l?: unknown) => void timers.set(label(l), now()),
    timeLog: (l?: unknown, ...args: unknown[]) => {
      const k = label(l);
      const t = timers.get(k);
      line('', t === undefined ? [`No such label '${k}'`] : [`${k}: ${now() - t}ms`, ...args]);
    },
    timeEnd: (l?: unknown) => {
      const k = label(l);
      const t = timers.get(k);
      timers.delete(k);
      line('', t === undefined ? [`No such label '${k}'`] : [`${k}: ${now() - t}ms`]);
    },
    group: (...args: unknown[]) => {
      if (args.length) line('', args);
      indent += '  ';
    },
    groupCollapsed: (...args: unknown[]) => {
      if (args.length) line('', args);
      indent += '  ';
    },
    groupEnd: () => void (indent = indent.slice(2)),
  };
  return {
    console: harden(console),
    reset() {
      // Only what an eval used: most use neither, and two Maps per eval is garbage for nothing.
      if (counts.size) counts = new Map();
      if (timers.size) timers = new Map();
      indent = '';
    },
  };
}
