/**
 * @module cli/output
 * How every command speaks: data on stdout (a table or key/value lines for people, `--json` for programs),
 * messages on stderr as `keynode: CODE: message`, and an exit code a script can branch on.
 */
import { ERROR_STATUS } from '../index.js';

/** Exit codes (README, "The admin CLI"). */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3, denied: 4, unavailable: 5 } as const;

/**
 * Codes the CLI makes itself, beside the container's (`ERROR_STATUS`); the README's table lists both, and a
 * test checks that it does.
 */
export const CLI_CODES = {
  ERR_NO_IDENTITY: EXIT.usage,
  ERR_EXISTS: EXIT.failure,
  ERR_BAD_BACKUP: EXIT.failure, // store/backup.ts throws it
} as const;

/** A failure the CLI itself detected, with its code and exit status. */
export class CliError extends Error {
  constructor(
    readonly code: keyof typeof CLI_CODES,
    message: string,
  ) {
    super(message);
  }
}

export function exitCodeOf(code: string | undefined): number {
  if (code && code in CLI_CODES) return CLI_CODES[code as keyof typeof CLI_CODES];
  switch (code) {
    case 'ERR_NODE_NOT_FOUND':
    case 'ERR_NODE_DESTROYED':
      return EXIT.notFound;
    case 'ERR_ACCESS_DENIED':
    case 'ERR_BAD_SIGNATURE':
      return EXIT.denied;
    case 'ERR_BAD_NODE_ID':
    case 'ERR_BAD_URL':
    case 'ERR_BAD_POLICY':
      return EXIT.usage;
    case 'ERR_UNAVAILABLE':
    case 'ERR_PORT_IN_USE':
    case 'ERR_OVERLOADED':
      return EXIT.unavailable;
    default:
      return EXIT.failure;
  }
}

/** Prints the error on stderr and sets the exit code; returns nothing so actions can `return report(e)`. */
export function report(e: unknown): void {
  const own = (e as { code?: unknown } | null)?.code;
  // Only keynode's codes are shown as codes: Node's own errors also carry `ERR_...` codes of their own.
  const code = typeof own === 'string' && (own in CLI_CODES || own in ERROR_STATUS) ? own : undefined;
  process.stderr.write(`keynode: ${code ? `${code}: ` : ''}${(e as Error)?.message ?? String(e)}\n`);
  process.exitCode = exitCodeOf(code);
}

export const out = (s: string): void => void process.stdout.write(s);
export const say = (s: string): void => void process.stderr.write(`${s}\n`);

export function json(value: unknown): void {
  out(`${JSON.stringify(value, null, 2)}\n`);
}

export function ago(ms: number | undefined): string {
  if (ms === undefined) return '-';
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.round(s / 60)}m` : s < 86_400 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86_400)}d`;
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

/** `key  value` lines; nested values are written as compact JSON. */
export function pairs(entries: [string, unknown][]): string {
  const shown = entries.filter(([, v]) => v !== undefined);
  const width = Math.max(...shown.map(([k]) => k.length));
  return shown.map(([k, v]) => `${k.padEnd(width)}  ${typeof v === 'string' ? v : JSON.stringify(v)}`).join('\n') + '\n';
}

/** Runs a command that needs no container, reporting failures like the others. */
export async function local(f: () => Promise<void>): Promise<void> {
  try {
    await f();
  } catch (e) {
    report(e);
  }
}
