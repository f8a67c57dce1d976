/**
 * @module cli/identity
 * `keynode identity new <file>` and `keynode identity show <file>`: make and read key files, so nobody
 * writes code to get a principal (to grant it a budget, or to give a program its own identity).
 */
import { access } from 'node:fs/promises';
import type { Command } from 'commander';
import { Identity } from '../index.js';
import { loadIdentity } from './connection.js';
import { CliError, json, local, out, say } from './output.js';

export function identityCommands(program: Command): void {
  const identity = program.command('identity').description('Make or read an identity key file (a principal: its ID is its public key).');
  identity
    .command('new')
    .argument('<file>', 'where to write the key file (mode 0600; never overwritten)')
    .option('--json', 'print { id, file }')
    .description('Make a new identity and print its ID.')
    .action((file: string, flags: { json?: boolean }) =>
      local(async () => {
        const exists = await access(file).then(() => true, () => false);
        if (exists) throw new CliError('ERR_EXISTS', `${file} already exists; an identity file is never overwritten (choose another name, or delete it if you are sure nobody needs that key)`);
        const me = Identity.generate();
        await me.save(file);
        if (flags.json) json({ id: me.id, file });
        else {
          out(`${me.id}\n`);
          say(`keynode: wrote ${file} (mode 0600); keep it private: whoever has it is this principal`);
        }
      }),
    );
  identity
    .command('show')
    .argument('<file>', 'an identity key file')
    .option('--json', 'print { id, file }')
    .description("Print an identity's ID (its public key), e.g. for `keynode grant`.")
    .action((file: string, flags: { json?: boolean }) =>
      local(async () => {
        const me = await loadIdentity(file, 'name an existing key file');
        if (flags.json) json({ id: me.id, file });
        else out(`${me.id}\n`);
      }),
    );
}
