// File helpers shared by the editor, the sweep and the caches.
import { readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { NoSpaceError } from '../errors.js';

let temporaries = 0;

/**
 * Writes a temporary file of this writer's own (`path.tmp-<pid>-<n>`: several processes may write one
 * path at once), then renames it over `path`: a reader, or a run resumed after a kill, never sees half a file.
 */
export function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}-${temporaries++}`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw new NoSpaceError(`cannot write ${path}: no space left on device (the disk is full; free space and write again)`, { cause: err });
    throw err;
  }
}

/** True for a regular file (symlinks followed). A FIFO or device in a file's place would block a read or never end. */
export function isRegularFile(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isFile() ?? false;
}

/**
 * Removes the `*.tmp-<pid>[-<n>]` files in `dir` whose writer no longer runs (it was killed mid-write).
 * A live writer's temporary is kept: removing it would make its rename fail.
 */
export function removeOrphanedTemporaries(dir: string): void {
  for (const name of readdirSync(dir)) {
    const m = /\.tmp-(\d+)(?:-\d+)?$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !processRuns(Number(m[1]))) rmSync(join(dir, name), { force: true });
  }
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // it runs, as another user
  }
}

/** `$XDG_CACHE_HOME/comeba/<sub>` (an empty XDG_CACHE_HOME counts as unset), else `~/.cache/comeba/<sub>`. */
export function comebaCacheDir(sub: string): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'comeba', sub);
}

/** 1536 → "1.5 KiB", binary units. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) { n /= 1024; u++; }
  return `${n.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

/** A small file's text, or undefined when it cannot be read (missing, gone meanwhile, not permitted). */
export function readTextIfAny(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
