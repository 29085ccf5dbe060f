// `comeba export`: an editor state saved by comeba (editor.save, a sweep's <out>/<mode>/editor) merged into a new
// Hugging Face checkpoint folder that transformers, transformers.js or any other loader reads as it is.

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { checkpointLayerCount, device, dtypes, existingFile, oneOf } from '../args.js';
import { ConsecutiveEditor } from '../edit/ConsecutiveEditor.js';
import { InvalidArgumentError } from '../errors.js';
import { formatBytes } from '../io/files.js';
import { HookedModel } from '../model/HookedModel.js';

export const summary = 'write an edited model as a Hugging Face checkpoint folder (W₀ + ΔW in its weights)';

const usage = `usage: comeba export --model DIR --state DIR --out DIR [--merge-hooks]

  --model DIR      the checkpoint folder the edits were made on
  --state DIR      the editor state: a folder editor.save() wrote (a sweep keeps one in <out>/<mode>/editor)
  --out DIR        the new checkpoint folder (must not exist): config and tokenizer copied, safetensors with
                   W₀ + ΔW in each edited weight, every tensor in its stored dtype
  --merge-hooks    comeba-hk only: apply its ΔW at every token (its validated hooks choose tokens, which a
                   weight cannot; without this flag a comeba-hk state is refused)
  --stats FILE     the statistics the state was made with, when they are no longer where editor.json says
  --device D       where the merge runs: cpu, cuda or cuda:N   (default cpu)
  --dtype T        float32, float16 or bfloat16 the model loads in (default float32; the files keep theirs)`;

export async function run(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' }, state: { type: 'string' }, out: { type: 'string' }, 'merge-hooks': { type: 'boolean' },
      stats: { type: 'string' }, device: { type: 'string', default: 'cpu' }, dtype: { type: 'string', default: 'float32' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(usage);
    return 0;
  }
  if (v.model === undefined || v.state === undefined || v.out === undefined) throw new InvalidArgumentError('--model DIR, --state DIR and --out DIR are required (see comeba export --help)');
  checkpointLayerCount(v.model);
  existingFile('--state', join(v.state, 'editor.json'));
  const load = { device: device(v.device!), dtype: oneOf('--dtype', v.dtype!, dtypes) };
  await using model = await HookedModel.load(v.model, load);
  await using editor = await ConsecutiveEditor.load(model, v.state, v.stats ? { stats: { file: v.stats } } : {});
  const report = await editor.exportModel(v.out, { mergeHooks: v['merge-hooks'] === true });
  console.log(`${report.dir}: ${editor.options.mode} edits of ${editor.step} batches merged into layers ${editor.options.layers.join(', ')} (${formatBytes(report.bytes)} of weights)`);
  if (report.mergedHooks) console.log('comeba-hk\'s ΔW now applies at every token: the hooks\' scope is gone (expect lower locality than the hooked model)');
  return 0;
}
