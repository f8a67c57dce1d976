/**
 * @module cli/dashboard
 * `keynode dashboard`: prints a one-time link to the container's dashboard. The link carries a token signed
 * by the operator key in its fragment (browsers never send a fragment to a server, so it is in no access
 * log); the page trades it for a session cookie on first use. Only the operator key can make one.
 */
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, type Command } from 'commander';
import { makeLinkToken, MAX_LINK_SECONDS } from '../container/edge/dashboard/sessions.js';
import { connection, loadIdentity, type ConnFlags } from './connection.js';
import { json, out, report, say } from './output.js';
import { connect } from '../index.js';

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_LINK_SECONDS) throw new InvalidArgumentError(`--ttl is 1 to ${MAX_LINK_SECONDS} seconds`);
  return n;
}

export function dashboardCommand(program: Command): void {
  connection(program.command('dashboard').description("Print a one-time link to the container's live dashboard (needs the operator identity)."))
    .option('--ttl <seconds>', `how long the link may wait to be opened (1 to ${MAX_LINK_SECONDS})`, seconds, 60)
    .action(async (flags: ConnFlags & { ttl: number }) => {
      try {
        const identity = await loadIdentity(flags.identity);
        // Only to learn the container's ID (the link is bound to it) and that it is a keynode container.
        const client = await connect(flags.url, { identity });
        await client.close();
        const expiresAt = Date.now() + flags.ttl * 1000;
        const token = makeLinkToken({ v: 1, c: client.containerId, exp: expiresAt, n: randomBytes(16).toString('hex') }, (m) => identity.sign(m));
        const url = `${client.url}/dashboard/#token=${token}`;
        if (flags.json) json({ url, expiresAt });
        else {
          out(`${url}\n`);
          say(`keynode: open this link within ${flags.ttl} s; it works once${identity.id === client.containerId ? '' : " (and only if it is signed with the container's operator key, which this identity is not)"}`);
        }
      } catch (e) {
        report(e);
      }
    });
}
