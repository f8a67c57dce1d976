/**
 * @module cli/backup
 * `keynode backup <dir>`: a consistent copy of a running container's store, read from one LevelDB snapshot
 * a page at a time (store/backup.ts). `keynode restore <dir> --data <new> --master-key <file>`: a data
 * directory made from a backup and the two keys a backup does not hold, ready for `keynode start`.
 */
import { chmod, copyFile, cp, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { keyPairFromSeed, idFromPublicKey, type Bodies } from '../protocol/index.js';
import { BackupWriter, readBackup, verifyBackup, type BackupPage } from '../store/index.js';
import { unsealSeed } from '../container/seal.js';
import { connection, DEFAULT_IDENTITY, loadIdentity, withClient, type ConnFlags } from './connection.js';
import { CliError, json, local, say } from './output.js';

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw e;
  }
}

export function backupCommands(program: Command): void {
  connection(program.command('backup').argument('<dir>', 'a new (or empty) directory to write the backup into').description("Copy a running container's store, consistently, without stopping it (master.key and operator.key are not in it: keep them apart)."))
    .action((dir: string, flags: ConnFlags) =>
      withClient(
        flags,
        async (client) => {
          const created = !(await stat(dir).then(() => true, () => false));
          await mkdir(dir, { recursive: true, mode: 0o700 });
          await chmod(dir, 0o700); // tenants' state is in it, in clear
          const writer = await BackupWriter.create(dir);
          try {
            let session: string | undefined;
            let takenAt = 0;
            for (;;) {
              const body: Bodies['backup'] = session === undefined ? {} : { session };
              const page = (await client.request('backup', body)) as BackupPage;
              session = page.session;
              takenAt = page.takenAt;
              await writer.write(page.entries);
              if (page.done) break;
            }
            const manifest = await writer.finish(client.containerId, takenAt);
            if (flags.json) json({ dir: resolve(dir), ...manifest });
            else say(`keynode: backed up ${manifest.entries} entries (${(manifest.bytes / 1024 / 1024).toFixed(1)} MB) of container ${manifest.containerId} as of ${new Date(takenAt).toISOString()} into ${dir}`);
          } catch (e) {
            await writer.abandon();
            // A backup that broke off is removed, so nobody restores half of one.
            await (created ? rm(dir, { recursive: true, force: true }) : rm(join(dir, 'db'), { recursive: true, force: true }));
            throw e;
          }
        },
        async () => {
          if (!(await isEmptyOrMissing(dir))) throw new CliError('ERR_EXISTS', `${dir} is not empty; back up into a new or empty directory`);
        },
      ),
    );

  program
    .command('restore')
    .argument('<backup>', 'a directory `keynode backup` wrote')
    .description('Make a data directory from a backup, for `keynode start --data <dir>` (the container must not be running on it).')
    .requiredOption('--data <dir>', 'the new data directory (must not hold a store yet)')
    .addOption(new Option('--master-key <file>', "the container's master.key (seals node keys; not in the backup)").env('KEYNODE_MASTER_KEY').makeOptionMandatory())
    .addOption(new Option('--identity <file>', "the container's operator.key (its identity; not in the backup)").env('KEYNODE_IDENTITY').default(DEFAULT_IDENTITY))
    .option('--json', 'print { data, containerId, takenAt, entries }')
    .action((backup: string, flags: { data: string; masterKey: string; identity: string; json?: boolean }) =>
      local(async () => {
        const manifest = await readBackup(backup);
        const operator = await loadIdentity(flags.identity);
        if (operator.id !== manifest.containerId) {
          throw new CliError('ERR_BAD_BACKUP', `the backup is of container ${manifest.containerId}, but ${flags.identity} is the identity of ${operator.id}; pass that container's operator.key with --identity`);
        }
        const master = Buffer.from((await readFile(flags.masterKey, 'utf8')).trim(), 'base64');
        if (master.length !== 32) throw new CliError('ERR_BAD_BACKUP', `${flags.masterKey} does not hold a 32-byte master key`);
        // Refuse before anything is written: a master key that does not open the backup's node keys would
        // give a container whose nodes cannot sign.
        await verifyBackup(backup, manifest, (rec) => {
          let ok = false;
          try {
            ok = idFromPublicKey(keyPairFromSeed(unsealSeed(master, rec.id, rec.sealedKey!)).publicKey) === rec.id;
          } catch {
            ok = false;
          }
          if (!ok) throw new CliError('ERR_BAD_BACKUP', `${flags.masterKey} does not open the node keys in this backup (node ${rec.id}); pass the master.key of container ${manifest.containerId}`);
        });
        const data = flags.data;
        if (!(await isEmptyOrMissing(join(data, 'db'))) || (await stat(join(data, 'master.key')).then(() => true, () => false))) {
          throw new CliError('ERR_EXISTS', `${data} holds a container already; restore into a new data directory`);
        }
        await mkdir(data, { recursive: true, mode: 0o700 });
        await chmod(data, 0o700);
        await cp(join(backup, 'db'), join(data, 'db'), { recursive: true, errorOnExist: true, force: false });
        await chmod(join(data, 'db'), 0o700);
        await copyFile(flags.masterKey, join(data, 'master.key'));
        await chmod(join(data, 'master.key'), 0o600);
        if (resolve(flags.identity) !== resolve(join(data, 'operator.key'))) await operator.save(join(data, 'operator.key'));
        if (flags.json) json({ data: resolve(data), containerId: manifest.containerId, takenAt: manifest.takenAt, entries: manifest.entries });
        else say(`keynode: restored container ${manifest.containerId} as of ${new Date(manifest.takenAt).toISOString()} (${manifest.entries} entries) into ${data}; start it with: keynode start --data ${data}`);
      }),
    );
}
