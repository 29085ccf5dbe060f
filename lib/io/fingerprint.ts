// Identity of a checkpoint folder: saved editor states and cached statistics are tied to it, so it must
// change whenever the weights do. SHA-256 over config.json, the shard index if any, and every byte of
// every *.safetensors file (name, size, then content). Guarantees: any change to the config, to a tensor
// or to a header changes it (up to SHA-256 collisions); the tokenizer files are not covered (they change
// the requests' tokens, not the weights a state belongs to). Costs one read of the weights (about 1.2 GB/s
// on this project's 2-core machine), streamed, so the event loop keeps running; computed once per load.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidCheckpointError } from '../errors.js';
import { isRegularFile } from './files.js';

export async function checkpointFingerprint(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const names = readdirSync(dir).filter((f) => f.endsWith('.safetensors') || f === 'model.safetensors.index.json').sort();
  for (const name of ['config.json', ...names]) {
    const path = join(dir, name);
    if (!isRegularFile(path)) throw new InvalidCheckpointError(`invalid checkpoint ${dir}: ${name} is not a regular file`);
    hash.update(`${name}:${statSync(path).size}:`);
    await hashFile(hash, path);
  }
  return hash.digest('hex').slice(0, 32);
}

async function hashFile(hash: Hash, path: string): Promise<void> {
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
}
