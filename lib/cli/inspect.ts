// `comeba inspect`: which libtorch was found and from where, which addon build was chosen and what it
// was built against, CUDA as the addon sees it, and why loading failed if it did. With --model, what a
// checkpoint is and what editing it will take, from config.json and the safetensors headers alone.

import { parseArgs } from 'node:util';
import { describeCheckpoint } from '../edit/describe.js';
import type { Dtype } from '../model/types.js';
import { formatRejected } from '../addon/libtorch.js';
import { InvalidArgumentError } from '../errors.js';
import { formatBytes } from '../io/files.js';
import { describeNative, type NativeDescription } from '../addon/native.js';

export const summary = 'show the libtorch found, the addon build chosen, CUDA devices, or why loading fails';

const usage = `usage: comeba inspect [--json] [--model DIR [--dtype float32|float16|bfloat16]]

  --json    print the full description as JSON
  --model   also describe this checkpoint: architecture, sizes, the editor's presets, memory estimate
  --dtype   the dtype the model would be loaded in (default float32)`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, model: { type: 'string' }, dtype: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const dtype = (values.dtype ?? 'float32') as Dtype;
  if (!['float32', 'float16', 'bfloat16'].includes(dtype)) throw new InvalidArgumentError(`--dtype must be float32, float16 or bfloat16, not '${dtype}'`);
  if (values.dtype !== undefined && values.model === undefined) throw new InvalidArgumentError('--dtype describes a --model: pass --model DIR too');
  const checkpoint = values.model === undefined ? undefined : describeCheckpoint(values.model, dtype);
  const description = describeNative();
  if (values.json) {
    console.log(JSON.stringify(checkpoint ? { ...description, checkpoint } : description, null, 2));
  } else {
    console.log(formatDescription(description));
    if (checkpoint) console.log(formatCheckpoint(values.model!, dtype, checkpoint));
  }
  return description.error ? 1 : 0;
}

function formatCheckpoint(dir: string, dtype: Dtype, c: ReturnType<typeof describeCheckpoint>): string {
  const i = c.info;
  const e = c.editor;
  const m = c.memory;
  return [
    `model      ${dir} (${i.architecture}): ${i.nLayer} layers, d_model ${i.dModel}, d_ff ${i.dFf}, ${i.nHead} heads, vocab ${i.vocabSize}, context ${i.contextLength}`,
    `weights    ${c.parameters.toLocaleString('en')} parameters stored as ${c.storedDtypes.join(', ')}; ${formatBytes(m.weights)} in ${dtype}`,
    `editor     ${e.mode} on layers ${e.layers.join(',')}, λ ${+e.lambda.toPrecision(6)} (${c.lambdaSource}), α_z ${e.alphaZ}, value steps ${e.vSteps} at lr ${e.vLr}, clamp ${e.clampNormFactor}`,
    `memory     on the model's device besides the weights: ${formatBytes(m.editor.device.total)} (C_accu ${formatBytes(m.editor.device.cAccu)} ${e.accumulatorDtype}, ` +
      `ΔW ${formatBytes(m.editor.device.delta)}, one layer's solve ${formatBytes(m.editor.device.solve)}, value step ~${formatBytes(m.editor.device.values)}); ` +
      `host ${formatBytes(m.editor.host.total)} (E[kkᵀ], λ·E[kkᵀ], keys held for incremental saves)`,
    `           with accumulatorOnHost: device ${formatBytes(m.editorOnHost.device.total)}, host ${formatBytes(m.editorOnHost.host.total)}`,
  ].join('\n');
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
