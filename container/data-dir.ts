/**
 * @module container/data-dir
 * The data directory holds tenants' state in clear (LevelDB writes its files with the process umask, 0644
 * by default) beside the operator and master keys. It is made private on every start: the directory and the
 * store's directory get mode 0700, which keeps every file under them from other local users whatever the
 * files' own modes. A directory owned by another user is refused, since this process could neither fix its
 * mode nor trust who else can write into it.
 */
import { chmod, mkdir, stat } from 'node:fs/promises';
import { KeynodeError } from '../protocol/index.js';

/** Creates `dirs` (in order, the data directory first) or narrows their modes to 0700; returns what it changed. */
export async function claimPrivate(dirs: string[]): Promise<{ path: string; was: string }[]> {
  const changed: { path: string; was: string }[] = [];
  if (process.platform === 'win32') return changed;
  for (const path of dirs) {
    await mkdir(path, { recursive: true, mode: 0o700 });
    const info = await stat(path);
    if (!info.isDirectory()) throw new KeynodeError('ERR_UNAVAILABLE', `${path} is not a directory`);
    if (process.getuid && info.uid !== process.getuid()) {
      throw new KeynodeError('ERR_UNAVAILABLE', `data directory ${path} belongs to uid ${info.uid}, not to this process (uid ${process.getuid()}); run keynode as its owner, or use another --data`);
    }
    if ((info.mode & 0o077) === 0) continue;
    await chmod(path, 0o700);
    changed.push({ path, was: (info.mode & 0o777).toString(8) });
  }
  return changed;
}
