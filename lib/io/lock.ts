// One writer per folder: an exclusive lock file naming its holder (written whole, then linked into place, which
// fails if it exists), taken by an editor's save and by a sweep for its whole run. A lock whose holder provably died
// (same host; the pid gone, or reused by a process started at another time) is taken over; otherwise the second
// writer gets FolderLockedError naming the holder.
import { linkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { FolderLockedError } from '../errors.js';
import { readTextIfAny } from './files.js';

interface Holder {
  pid: number;
  host: string;
  /** The holder's start time in clock ticks since boot (/proc/<pid>/stat): tells a reused pid apart. */
  started: string;
  since: string;
  command: string;
}

/** The lock file's name in a locked folder. */
export const lockName = '.comeba-lock';

let serial = 0;  // names of this process's temporary lock files

/** Takes the lock at `path` for `what` (words for the error); returns the function that releases it. */
export function acquireLock(path: string, what: string): () => void {
  const me: Holder = { pid: process.pid, host: hostname(), started: processStart(process.pid) ?? '', since: new Date().toISOString(), command: process.argv.slice(1).join(' ') };
  for (let attempt = 0; attempt < 5; attempt++) {
    // Written whole under a temporary name, then linked into place (fails if the lock exists): a lock file is never
    // seen empty or half-written, which another writer would take for a torn one and take over while we hold it.
    const pending = `${path}.tmp-${process.pid}-${serial++}`;
    try {
      writeFileSync(pending, JSON.stringify(me));
      linkSync(pending, path);
      return () => releaseLock(path, me);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      rmSync(pending, { force: true });
    }
    const text = readTextIfAny(path);
    if (text === undefined) continue; // released meanwhile
    const holder = parse(text);
    if (holder && !holderIsGone(holder)) {
      throw new FolderLockedError(
        `${what} is being written by process ${holder.pid} on ${holder.host} since ${holder.since} (${holder.command}); ` +
          `wait for it to finish, or remove ${path} if that process is gone`,
      );
    }
    // Gone (or a lock file that does not parse: not one of ours): move it aside atomically, so that of several
    // processes taking over only one does; if what was moved is not the stale lock we judged (a new holder came in
    // between), put it back.
    const aside = `${path}.stale-${process.pid}-${serial++}`;
    try {
      renameSync(path, aside);
    } catch {
      continue;
    }
    if (readTextIfAny(aside) !== text) {
      try {
        linkSync(aside, path);
      } catch {
        // another process holds the lock now; the one we moved will find its lock gone at release
      }
    }
    rmSync(aside, { force: true });
  }
  throw new FolderLockedError(`${what}: could not take the lock ${path} (it changed hands repeatedly)`);
}

function releaseLock(path: string, me: Holder): void {
  // Only our own lock: after a takeover of a lock we held (we were judged gone), it is someone else's.
  const holder = parse(readTextIfAny(path) ?? '');
  if (holder && holder.pid === me.pid && holder.host === me.host && holder.since === me.since) rmSync(path, { force: true });
}

function holderIsGone(holder: Holder): boolean {
  if (holder.host !== hostname()) return false; // cannot be proven from here
  if (holder.pid === process.pid) return false;  // this process: a second writer within it
  const started = processStart(holder.pid);
  return started === undefined || (holder.started !== '' && started !== holder.started);
}

// Field 22 of /proc/<pid>/stat (the process's start time); undefined when no such process runs.
function processStart(pid: number): string | undefined {
  const stat = readTextIfAny(`/proc/${pid}/stat`);
  if (stat === undefined) {
    try {
      process.kill(pid, 0);
      return '';  // runs, but no /proc to tell its start (not Linux)
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM' ? '' : undefined;
    }
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

function parse(text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Holder;
    return Number.isSafeInteger(h?.pid) && typeof h.host === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}
