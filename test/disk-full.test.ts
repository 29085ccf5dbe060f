// A full disk during a save (issue 23 #8): the save fails as NoSpaceError (code NO_SPACE), leaves no partial
// temporary (it would hold the very space a retry needs), the folder keeps its last complete checkpoint, and once
// space is freed the same editor saves again. The disk is a 16 MiB tmpfs in a mount namespace of the test's own
// (`unshare`, no root needed where user namespaces are allowed; skipped elsewhere).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { needing, repoRoot, tempDir } from './helpers.js';

const unshare = ['--user', '--map-root-user', '--mount'];
const canMount = spawnSync('unshare', [...unshare, 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs "$0"', tempDir()], { encoding: 'utf8' }).status === 0;
const withTmpfs = needing(test, canMount, 'no unprivileged tmpfs mount here (unshare --user --mount)', 'COMEBA_REQUIRE_UNSHARE', 'allow user namespaces');

withTmpfs('a save on a full disk fails as NO_SPACE, leaves nothing behind, and the editor saves again once space is freed', (t) => {
  const disk = tempDir('comeba-disk-');
  const script = 'mount -t tmpfs -o size=16m tmpfs "$0" && exec "$1" --import tsx "$2" "$0" "$3"';
  const run = spawnSync('unshare', [...unshare, 'sh', '-c', script, disk, process.execPath, join(repoRoot, 'test', 'disk-full-writer.ts'), tempDir()], {
    cwd: repoRoot, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  t.is(run.status, 0, run.stderr);
  const steps = run.stdout.trim().split('\n').map((l) => JSON.parse(l));
  t.log(steps.at(-1));
  const [incFull, incAfter, fullFull, fullAfter, incFreed, incFreedAfter, fullFreed, fullFreedAfter] = steps;
  for (const failed of [incFull, fullFull]) {
    t.like(failed, { saved: false, code: 'NO_SPACE', name: 'NoSpaceError' }, failed.what);
    t.regex(failed.message, /No space left on device/, failed.what);
  }
  t.deepEqual(incAfter, { what: 'after', temporaries: [], loads: true }, 'the folder still loads its last checkpoint');
  t.deepEqual(fullAfter, { what: 'after', temporaries: [], files: [] }, 'a first save that failed leaves the folder empty');
  t.like(incFreed, { saved: true });
  t.deepEqual(incFreedAfter, { what: 'after', temporaries: [], loads: true }, 'the retried save holds the current state');
  t.like(fullFreed, { saved: true });
  t.like(fullFreedAfter, { temporaries: [], loads: true });
});
