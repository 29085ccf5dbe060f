// File helpers shared by the editor, the sweep and the caches.
import { renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Writes `path.tmp`, then renames it over `path`: a reader (or a resumed run after a kill) never sees half a file. */
export function writeAtomically(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/** `$XDG_CACHE_HOME/comeba/<sub>` (an empty XDG_CACHE_HOME counts as unset), else `~/.cache/comeba/<sub>`. */
export function comebaCacheDir(sub: string): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'comeba', sub);
}
