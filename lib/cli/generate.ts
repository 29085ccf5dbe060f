// `comeba generate`: continue a prompt with a checkpoint folder, through the native KV cache: greedy or sampled,
// with stop strings, printed at the end or as it is generated (--stream).

import { parseArgs } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import { HookedModel } from '../model/HookedModel.js';
import { generateDefaults } from '../model/types.js';
import { checkpointLayerCount, device, dtypes, oneOf, positiveInteger, positiveNumber } from '../args.js';

export const summary = 'continue a prompt with a local Hugging Face checkpoint (greedy or sampled, KV cache)';

const usage = `usage: comeba generate --model DIR --prompt TEXT [options]

  --model DIR          Hugging Face checkpoint folder (config.json, safetensors, tokenizer)
  --prompt TEXT        the text to continue (BOS first where the model's tokenizer prepends one)
  --max-new-tokens N   tokens to generate after the prompt           (default ${generateDefaults.maxNewTokens}; fewer at the EOS token)
  --temperature T      sample from softmax(logits / T)                (default ${generateDefaults.temperature}: greedy)
  --top-k K            sample among the K most likely tokens         (default ${generateDefaults.topK}: no limit)
  --top-p P            sample among the tokens that make up P of the probability (default ${generateDefaults.topP}: no limit)
  --seed S             the sampler's seed: the same seed, the same tokens (default ${generateDefaults.seed})
  --stop TEXT          stop once the text contains TEXT (repeatable); the text ends before it
  --no-eos             keep going past the model's EOS token
  --stream             print the text as it is generated
  --device D           cpu, cuda or cuda:N                           (default cpu)
  --dtype T            float32, float16 or bfloat16                  (default float32)`;

export async function run(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'max-new-tokens': { type: 'string', default: String(generateDefaults.maxNewTokens) },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string', multiple: true },
      'no-eos': { type: 'boolean' },
      stream: { type: 'boolean' },
      device: { type: 'string', default: 'cpu' },
      dtype: { type: 'string', default: 'float32' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(usage);
    return 0;
  }
  if (v.model === undefined || v.prompt === undefined) throw new InvalidArgumentError('--model DIR and --prompt TEXT are required (see comeba generate --help)');
  checkpointLayerCount(v.model);  // a folder with a config.json, before the addon loads
  const topP = v['top-p'] === undefined ? undefined : positiveNumber('--top-p', v['top-p']);
  if (topP !== undefined && topP > 1) throw new InvalidArgumentError(`--top-p must be in (0, 1], not '${v['top-p']}'`);
  const options = {
    maxNewTokens: positiveInteger('--max-new-tokens', v['max-new-tokens']!),
    temperature: v.temperature === undefined ? undefined : positiveNumber('--temperature', v.temperature, { zero: true }),
    topK: v['top-k'] === undefined ? undefined : positiveInteger('--top-k', v['top-k']),
    topP,
    seed: v.seed === undefined ? undefined : positiveInteger('--seed', v.seed, { zero: true }),
    stop: v.stop,
    stopAtEos: !v['no-eos'],
  };
  const load = { device: device(v.device!), dtype: oneOf('--dtype', v.dtype!, dtypes) };
  const started = performance.now();
  await using model = await HookedModel.load(v.model, load);
  const loaded = performance.now();
  console.log(`model      ${v.model} (${model.info.architecture}, ${model.info.nLayer} layers, d_model ${model.info.dModel}, ${model.info.device}, ${model.info.dtype})`);
  console.log(`prompt     ${JSON.stringify(v.prompt)}`);
  if (v.stream) process.stdout.write('generated  ');
  const out = await model.generate(v.prompt, { ...options, ...(v.stream ? { onToken: (p) => void process.stdout.write(p.text) } : {}) });
  const done = performance.now();
  console.log(v.stream ? '' : `generated  ${JSON.stringify(out.text)}`);
  console.log(`tokens     ${out.tokens.join(' ')}`);
  console.log(`finished   ${out.finishReason}`);
  console.log(`timing     load ${(loaded - started).toFixed(0)} ms, ${out.tokens.length} tokens in ${(done - loaded).toFixed(0)} ms`);
  return 0;
}
