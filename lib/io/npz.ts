// Reading numpy .npz files (a zip of .npy arrays, stored or deflated, with zip64 as numpy writes it), for
// the MEMIT-format statistics users already have (`mom2.mom2`, `mom2.count`).
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { InvalidArgumentError } from '../errors.js';

export interface NpyArray {
  dtype: string;   // numpy descr, e.g. '<f4'
  shape: number[];
  data: Float32Array | Float64Array | BigInt64Array | Int32Array;
}

interface Entry { name: string; method: number; compressedSize: number; size: number; localOffset: number }

function readAt(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  readSync(fd, buf, 0, length, position);
  return buf;
}

function centralDirectory(fd: number, fileSize: number, path: string): Entry[] {
  const tailLength = Math.min(fileSize, 65557);
  const tail = readAt(fd, fileSize - tailLength, tailLength);
  const eocd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new InvalidArgumentError(`${path} is not a zip (.npz) file`);
  let count = tail.readUInt16LE(eocd + 10);
  let offset = tail.readUInt32LE(eocd + 16);
  if (count === 0xffff || offset === 0xffffffff) {
    // zip64: the locator just before the classic record points at the zip64 end record.
    const locator = eocd - 20;
    const zip64 = readAt(fd, Number(tail.readBigUInt64LE(locator + 8)), 56);
    count = Number(zip64.readBigUInt64LE(32));
    offset = Number(zip64.readBigUInt64LE(48));
  }
  const entries: Entry[] = [];
  let pos = offset;
  for (let i = 0; i < count; i++) {
    const h = readAt(fd, pos, 46);
    if (h.readUInt32LE(0) !== 0x02014b50) throw new InvalidArgumentError(`${path}: damaged zip central directory`);
    const [nameLen, extraLen, commentLen] = [h.readUInt16LE(28), h.readUInt16LE(30), h.readUInt16LE(32)];
    const rest = readAt(fd, pos + 46, nameLen + extraLen);
    const entry: Entry = {
      name: rest.subarray(0, nameLen).toString('utf8'), method: h.readUInt16LE(10),
      compressedSize: h.readUInt32LE(20), size: h.readUInt32LE(24), localOffset: h.readUInt32LE(42),
    };
    // The zip64 extra field holds, in order, whichever of these were 0xffffffff.
    for (let e = nameLen; e + 4 <= rest.length;) {
      const [id, len] = [rest.readUInt16LE(e), rest.readUInt16LE(e + 2)];
      if (id === 0x0001) {
        let f = e + 4;
        for (const key of ['size', 'compressedSize', 'localOffset'] as const) {
          if (entry[key] === 0xffffffff) { entry[key] = Number(rest.readBigUInt64LE(f)); f += 8; }
        }
      }
      e += 4 + len;
    }
    entries.push(entry);
    pos += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

function parseNpy(buf: Buffer, where: string): NpyArray {
  if (buf.subarray(0, 6).toString('latin1') !== '\x93NUMPY') throw new InvalidArgumentError(`${where} is not a .npy array`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.subarray(start, start + headerLen).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '').split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (!descr) throw new InvalidArgumentError(`${where}: unreadable .npy header`);
  if (fortran) throw new InvalidArgumentError(`${where}: Fortran-ordered arrays are not supported`);
  const body = buf.subarray(start + headerLen);
  const copy = (n: number) => body.buffer.slice(body.byteOffset, body.byteOffset + n);
  const numel = shape.reduce((a, b) => a * b, 1);
  switch (descr) {
    case '<f4': return { dtype: descr, shape, data: new Float32Array(copy(numel * 4)) };
    case '<f8': return { dtype: descr, shape, data: new Float64Array(copy(numel * 8)) };
    case '<i8': return { dtype: descr, shape, data: new BigInt64Array(copy(numel * 8)) };
    case '<i4': return { dtype: descr, shape, data: new Int32Array(copy(numel * 4)) };
    default: throw new InvalidArgumentError(`${where}: dtype ${descr} is not supported`);
  }
}

/** The arrays `names` (without ".npy") of an .npz file; missing ones are absent from the result. */
export function readNpz(path: string, names: string[]): Map<string, NpyArray> {
  const fd = openSync(path, 'r');
  try {
    const out = new Map<string, NpyArray>();
    for (const entry of centralDirectory(fd, statSync(path).size, path)) {
      const name = entry.name.replace(/\.npy$/, '');
      if (!names.includes(name)) continue;
      const local = readAt(fd, entry.localOffset, 30);
      const dataStart = entry.localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
      const raw = readAt(fd, dataStart, entry.compressedSize);
      if (entry.method !== 0 && entry.method !== 8) throw new InvalidArgumentError(`${path}: ${entry.name} uses zip method ${entry.method}`);
      out.set(name, parseNpy(entry.method === 8 ? inflateRawSync(raw) : raw, `${path}:${entry.name}`));
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
