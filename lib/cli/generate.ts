// `comeba generate`: greedy continuation of a prompt by a checkpoint folder, through the native KV cache.

import { parseArgs } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import { HookedModel } from '../model/HookedModel.js';
import { generateDefaults } from '../model/types.js';
import { checkpointLayerCount, device, dtypes, oneOf, positiveInteger } from '../args.js';

export const summary = 'continue a prompt with a local Hugging Face checkpoint (greedy, KV cache)';

const usage = `usage: comeba generate --model DIR --prompt TEXT [--max-new-tokens N] [--device cpu|cuda[:N]] [--dtype float32|float16|bfloat16]

  --max-new-tokens N   tokens to generate after the prompt (default ${generateDefaults.maxNewTokens}; fewer if the model emits its EOS token)
  --device, --dtype    where and in what precision the weights are loaded (default cpu, float32)`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'max-new-tokens': { type: 'string', default: String(generateDefaults.maxNewTokens) },
      device: { type: 'string', default: 'cpu' },
      dtype: { type: 'string', default: 'float32' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  if (values.model === undefined || values.prompt === undefined) throw new InvalidArgumentError('--model DIR and --prompt TEXT are required (see comeba generate --help)');
  checkpointLayerCount(values.model);  // a folder with a config.json, before the addon loads
  const maxNewTokens = positiveInteger('--max-new-tokens', values['max-new-tokens']!);
  const options = { device: device(values.device!), dtype: oneOf('--dtype', values.dtype!, dtypes) };
  const started = performance.now();
  await using model = await HookedModel.load(values.model, options);
  const loaded = performance.now();
  const out = await model.generate(values.prompt, { maxNewTokens });
  const done = performance.now();
  console.log(`model      ${values.model} (${model.info.architecture}, ${model.info.nLayer} layers, d_model ${model.info.dModel}, ${model.info.device}, ${model.info.dtype})`);
  console.log(`prompt     ${JSON.stringify(values.prompt)}`);
  console.log(`generated  ${JSON.stringify(out.text)}`);
  console.log(`tokens     ${out.tokens.join(' ')}`);
  console.log(`timing     load ${(loaded - started).toFixed(0)} ms, ${out.tokens.length} tokens in ${(done - loaded).toFixed(0)} ms`);
  return 0;
}
