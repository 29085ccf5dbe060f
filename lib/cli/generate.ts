// `comeba generate`: greedy continuation of a prompt by a checkpoint folder, through the native KV cache.

import { parseArgs } from 'node:util';
import { HookedModel, type Device, type Dtype } from '../HookedModel.js';

export const summary = 'continue a prompt with a local Hugging Face checkpoint (greedy, KV cache)';

const usage = `usage: comeba generate --model DIR --prompt TEXT [--max-new-tokens N] [--device cpu|cuda[:N]] [--dtype float32|float16|bfloat16]`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'max-new-tokens': { type: 'string', default: '20' },
      device: { type: 'string', default: 'cpu' },
      dtype: { type: 'string', default: 'float32' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.model || values.prompt === undefined) {
    console.log(usage);
    return values.help ? 0 : 2;
  }
  const started = performance.now();
  await using model = await HookedModel.load(values.model, { device: values.device as Device, dtype: values.dtype as Dtype });
  const loaded = performance.now();
  const out = await model.generate(values.prompt, { maxNewTokens: Number(values['max-new-tokens']) });
  const done = performance.now();
  console.log(`model      ${values.model} (${model.info.architecture}, ${model.info.nLayer} layers, d_model ${model.info.dModel}, ${model.info.device}, ${model.info.dtype})`);
  console.log(`prompt     ${JSON.stringify(values.prompt)}`);
  console.log(`generated  ${JSON.stringify(out.text)}`);
  console.log(`tokens     ${out.tokens.join(' ')}`);
  console.log(`timing     load ${(loaded - started).toFixed(0)} ms, ${out.tokens.length} tokens in ${(done - loaded).toFixed(0)} ms`);
  return 0;
}
