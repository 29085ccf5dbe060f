// Identity of a checkpoint folder, cheap enough to compute at every load of an editor state or statistics
// cache: config.json, then per weight file its name, size, and its first MiB (header and leading data).
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const sampleBytes = 1 << 20;

export function checkpointFingerprint(dir: string): string {
  const hash = createHash('sha256');
  hash.update(readFileSync(join(dir, 'config.json')));
  const weights = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  for (const file of weights) {
    const path = join(dir, file);
    const size = statSync(path).size;
    const buf = Buffer.alloc(Math.min(size, sampleBytes));
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, buf.length, 0);
    } finally {
      closeSync(fd);
    }
    hash.update(`${file}:${size}:`).update(buf);
  }
  return hash.digest('hex').slice(0, 32);
}
