// `comeba inspect`: which libtorch was found and from where, which addon build was chosen and what it
// was built against, CUDA as the addon sees it, and why loading failed if it did.

import { parseArgs } from 'node:util';
import { formatRejected } from '../libtorch.js';
import { describeNative, type NativeDescription } from '../native.js';

export const summary = 'show the libtorch found, the addon build chosen, CUDA devices, or why loading fails';

const usage = `usage: comeba inspect [--json]

  --json   print the full description as JSON`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const description = describeNative();
  console.log(values.json ? JSON.stringify(description, null, 2) : formatDescription(description));
  return description.error ? 1 : 0;
}

const yesNo = (flag: boolean): string => (flag ? 'yes' : 'no');

function formatDescription(d: NativeDescription): string {
  const lines: string[] = [`package    ${d.packageRoot}`];
  if (d.libtorch) {
    const t = d.libtorch;
    lines.push(`libtorch   ${t.version} (${t.variant}, cxx11 ABI: ${yesNo(t.cxx11Abi)}) from ${t.source}`, `           ${t.dir}`);
  }
  if (d.libtorchRejected.length > 0) lines.push('skipped libtorch candidates:', formatRejected(d.libtorchRejected));
  if (d.addon) {
    const b = d.addon.buildInfo;
    lines.push(`addon      ${d.addon.path} (${d.addon.kind})`,
      `           built for torch ${b.torchVersion} (${b.variant}, cxx11 ABI: ${yesNo(b.cxx11Abi)}), N-API ${b.napi}, needs glibc ${b.glibc}, built ${b.builtAt}`);
  }
  if (d.addonRejected.length > 0) lines.push('skipped addon builds:', ...d.addonRejected.map((r) => `  - ${r.path}: ${r.reason}`));
  if (d.runtime) {
    const { buildInfo, cuda } = d.runtime;
    lines.push(`runtime    addon reports torch ${buildInfo.torchVersion}, CUDA compiled: ${yesNo(buildInfo.cudaCompiled)}`,
      `CUDA       ${cuda.available ? `available, ${cuda.deviceCount} device(s)` : 'not available'}`);
  }
  if (d.error) lines.push(`error      ${d.error.name}: ${d.error.message}`);
  return lines.join('\n');
}
