// Editing saved editor states the way corruption or a careless tool would: raw bytes, or values with
// their digests recomputed (so the check after the digest is what refuses them).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

interface Parsed { header: Record<string, any>; dataStart: number; bytes: Buffer }

function parse(path: string): Parsed {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')), dataStart: 8 + n, bytes };
}

/** FNV-1a over 64-bit little-endian words, then the tail bytes: native/edit/state_file.cpp's tensor digest. */
export function stateDigest(data: Uint8Array): string {
  const prime = 1099511628211n;
  let hash = 1469598103934665603n;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let i = 0;
  for (; i + 8 <= data.length; i += 8) hash = BigInt.asUintN(64, (hash ^ view.getBigUint64(i, true)) * prime);
  for (; i < data.length; i++) hash = BigInt.asUintN(64, (hash ^ BigInt(data[i])) * prime);
  return hash.toString(16).padStart(16, '0');
}

/** Applies `edit` to the file's raw bytes. */
export function corruptState(path: string, edit: (bytes: Buffer) => void): void {
  const bytes = readFileSync(path);
  edit(bytes);
  writeFileSync(path, bytes);
}

/** Changes one float tensor's values in place and stores its new digest, as a consistent writer would. */
export function rewriteState(path: string, tensor: string, edit: (values: Float32Array | Float64Array) => void): void {
  const { header, dataStart, bytes } = parse(path);
  const entry = header[tensor];
  if (!entry) throw new Error(`${path} has no tensor ${tensor}`);
  const raw = bytes.subarray(dataStart + entry.data_offsets[0], dataStart + entry.data_offsets[1]);
  const copy = new Uint8Array(raw); // aligned
  const values = entry.dtype === 'F64' ? new Float64Array(copy.buffer) : new Float32Array(copy.buffer);
  edit(values);
  raw.set(copy);
  const digests = JSON.parse(header.__metadata__.digests);
  digests[tensor] = stateDigest(copy);
  header.__metadata__.digests = JSON.stringify(digests);
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json), bytes.subarray(dataStart)]));
}

/**
 * Records the state files' current headers in `dir`/editor.json (its `files` digests), as the writer of a
 * rewritten state would: so that what refuses the state is the check after the binding.
 */
export function rebindFiles(dir: string): void {
  const path = join(dir, 'editor.json');
  const saved = JSON.parse(readFileSync(path, 'utf8')) as { files?: Record<string, string> };
  for (const name of Object.keys(saved.files ?? {})) {
    const bytes = readFileSync(join(dir, name));
    const n = Number(bytes.readBigUInt64LE(0));
    saved.files![name] = createHash('sha256').update(bytes.subarray(8, 8 + n)).digest('hex');
  }
  writeFileSync(path, JSON.stringify(saved));
}

