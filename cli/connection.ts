/**
 * @module cli/connection
 * The flags every command that talks to a container shares (`--url`, `--identity`, `--json`), and the one
 * way those commands load an identity, connect and report failures.
 */
import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { connect, Identity, isKeynodeError, isNodeId, KeynodeError, parseNodeUrl, type Client } from '../index.js';
import { CliError, report } from './output.js';

export interface ConnFlags {
  url: string;
  identity: string;
  json?: boolean;
  /** PEM certificates to trust for an HTTPS container. */
  ca?: string;
}

export const DEFAULT_IDENTITY = './.keynode/operator.key';

export function connection(cmd: Command, json = true): Command {
  cmd
    .addOption(new Option('--url <url>', 'container URL').env('KEYNODE_URL').default('http://127.0.0.1:7070'))
    .addOption(new Option('--identity <file>', 'identity key file').env('KEYNODE_IDENTITY').default(DEFAULT_IDENTITY))
    .addOption(new Option('--ca <file>', 'certificates (PEM) to trust for an HTTPS container').env('KEYNODE_TLS_CA'));
  if (json) cmd.option('--json', 'print JSON (shapes in the README)');
  return cmd;
}

/** Loads an identity file; a missing one says which flag and variable choose another. */
export async function loadIdentity(file: string, choose = 'pass --identity <file> or set KEYNODE_IDENTITY'): Promise<Identity> {
  try {
    return await Identity.load(file);
  } catch (e) {
    if (isKeynodeError(e) && (e.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      throw new CliError(
        'ERR_NO_IDENTITY',
        `no identity file at ${file}: ${choose} (a container's operator key is <data>/operator.key, ${DEFAULT_IDENTITY} by default; \`keynode identity new <file>\` makes a new identity)`,
      );
    }
    throw e;
  }
}

/** A node argument: a node ID or URL, checked before anything is sent. */
export function nodeArg(value: string): string {
  const text = String(value); // isNodeId narrows `value` itself to never when it fails
  if (isNodeId(value)) return value;
  try {
    return parseNodeUrl(value).url;
  } catch {
    throw new KeynodeError('ERR_BAD_NODE_ID', `${JSON.stringify(text.length > 80 ? `${text.slice(0, 77)}...` : text)} is not a node ID or URL (a node ID is 52 lowercase base32 characters; a URL is http(s)://host[:port]/<nodeId>)`);
  }
}

/**
 * Connects with the command's identity, runs `f`, reports any failure with its code and exit status.
 * `check` validates arguments first, so a malformed one fails before any file is read or socket opened.
 */
export async function withClient(flags: ConnFlags, f: (client: Client) => Promise<void>, check?: () => unknown): Promise<void> {
  let client: Client | undefined;
  try {
    await check?.();
    client = await connect(flags.url, { identity: await loadIdentity(flags.identity), ...(flags.ca ? { ca: await readFile(flags.ca) } : {}) });
    await f(client);
  } catch (e) {
    report(e);
  } finally {
    await client?.close();
  }
}
