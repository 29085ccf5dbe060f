// The sweep's command line: `comeba sweep`'s flags and the argv a queued sweep job carries, checked and turned
// into runSweep's options before any model loads.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../addon/native.js';
import { checkpointLayerCount, device, dtypes, existingFile, oneOf, parseLayers, positiveInteger, positiveNumber } from '../args.js';
import { calibratedScope, defaultAlphaZ, lambdaByMode, singleRoundLambda, valueDefaults, valueFlags, type ValueOptions } from '../edit/options.js';
import { datasetFormats, detectFormat } from '../eval/datasets.js';
import { decisionRules } from '../model/types.js';
import { fluencyTimes, optionalMetrics, protocols, sweepMethods, type SweepOptions } from './types.js';

const testbed = join(packageRoot, 'testbed');

export const sweepUsage = `usage: comeba sweep [options]        (rerun the same command to resume after an interruption)

  --model DIR          Hugging Face checkpoint folder        (default: the embedded testbed model)
  --data FILE          dataset                               (default: the testbed's counterfact.json)
  --format F           counterfact | zsre | memit | mquake | jsonl
                                                             (default: detected from the file)
  --n N                number of edits                       (default 1000)
  --batch B            edits per batch                       (default 10; 30 for single-round)
  --mode M             ${sweepMethods.join(' | ')},
                       several separated by commas, or all   (default all)
  --layers L           edited layers, e.g. 3,4,5 or 3-5      (default: preset / scaling rule)
  --lambda X           weight λ of the pre-trained keys      (default: the model's comeba.json, else the
                                                             paper's on GPT2-XL (${Object.entries(lambdaByMode).map(([m, l]) => `${m} ${l}`).join(', ')};
                                                             single-round comeba-hk ${singleRoundLambda['comeba-hk']}) scaled by d_ff (docs/method.md
                                                             "λ for any model"; comeba inspect prints it))
  --alpha-z X          initial α of the hooks' z-score test  (default ${defaultAlphaZ})
  --scope-kappa X, --alpha-floor X
                       κ and α floor of comeba-hk+calibrated (defaults ${calibratedScope.scopeKappa} and ${calibratedScope.alphaFloor}; docs/method.md "Editing scope")
${Object.entries(valueFlags).map(([key, f]) => `${`  --${f.flag} X`.padEnd(22)} ${f.doc.padEnd(37)} (default: preset, else ${valueDefaults[key as keyof ValueOptions]})`).join('\n')}
  --stats-corpus FILE  text for E[kkᵀ]                       (default: <model>/stats-corpus.txt; required without it)
  --stats FILE         E[kkᵀ] from a statistics file (comeba stats / stats merge) instead; with --heldout or
                       --skip perplexity
  --stats-cache DIR    where statistics from the corpus are kept (default <out>/stats; sweeps of one model
                                                              and corpus may share one)
  --heldout FILE       text for held-out perplexity          (default: the last 5 % (≤ 200) documents of the
                                                              statistics corpus, which the statistics then leave out)
  --skip M             metrics not to compute: generation, perplexity, fluency (comma-separated)
  --fluency-at W       end | checkpoints: when a consecutive sweep takes fluency (default end)
  --fluency-decisions D
                       exact | settled: how the validated hooks decide while fluency's text is generated
                                                             (default exact; settled costs about what the
                                                              unedited model does: docs/method.md "Generation")
  --eval-every N       edits between evaluations             (default 200, rounded up to a multiple of --batch)
  --protocol P         consecutive | single-round            (default consecutive)
  --out DIR            results and resumable state           (default ./comeba-sweep)
  --device D, --dtype T

Every checkpoint reports the paper's teacher-forced metrics and the generation-based ones (greedy, target
length + 2 tokens, exact match), portability on multi-hop questions (MQuAKE), and for consecutive sweeps held-out
perplexity (ratio to the unedited model's) and, at the end (or every checkpoint), fluency (n-gram entropy of 100
greedy tokens from 50 prompts).
A rerun with the same --out resumes; one whose settings differ from <out>/settings.json is refused.`;

/** `comeba sweep`'s flags: what parseSweepArgs takes, and the option names a queued sweep may use. */
export const sweepFlags = {
  model: { type: 'string', default: join(testbed, 'model') },
  data: { type: 'string', default: join(testbed, 'counterfact.json') },
  format: { type: 'string' },
  n: { type: 'string', default: '1000' },
  batch: { type: 'string' },
  mode: { type: 'string', default: 'all' },
  layers: { type: 'string' },
  lambda: { type: 'string' },
  'alpha-z': { type: 'string' },
  'scope-kappa': { type: 'string' },
  'alpha-floor': { type: 'string' },
  ...Object.fromEntries(Object.values(valueFlags).map((f) => [f.flag, { type: 'string' }])) as Record<`${typeof valueFlags[keyof ValueOptions]['flag']}`, { type: 'string' }>,
  'stats-corpus': { type: 'string' },
  stats: { type: 'string' },
  'stats-cache': { type: 'string' },
  heldout: { type: 'string' },
  skip: { type: 'string' },
  'fluency-at': { type: 'string', default: 'end' },
  'fluency-decisions': { type: 'string', default: 'exact' },
  'eval-every': { type: 'string' },
  protocol: { type: 'string', default: 'consecutive' },
  out: { type: 'string', default: 'comeba-sweep' },
  device: { type: 'string', default: 'cpu' },
  dtype: { type: 'string', default: 'float32' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * The command line as runSweep's options (every flag checked here, before any model loads); null for --help.
 * `files: false` checks the values alone, not the files they name (a queued sweep's paths are the workers').
 */
export function parseSweepArgs(argv: string[], { files = true } = {}): SweepOptions | null {
  const { values: v } = parseArgs({ args: argv, options: sweepFlags });
  if (v.help) return null;
  // Every flag is checked here, before the model loads; runSweep checks what depends on several (and the folders).
  const protocol = oneOf('--protocol', v.protocol!, protocols);
  const modes = v.mode === 'all' ? [...sweepMethods] : v.mode!.split(',').map((m) => oneOf('--mode', m, sweepMethods));
  const n = positiveInteger('--n', v.n!);
  const batch = v.batch === undefined ? (protocol === 'single-round' ? 30 : 10) : positiveInteger('--batch', v.batch);
  // default: every 200 edits, rounded up to whole batches
  const evalEvery = v['eval-every'] === undefined ? Math.ceil(200 / batch) * batch : positiveInteger('--eval-every', v['eval-every']);
  const nLayer = files ? checkpointLayerCount(v.model!) : Number.MAX_SAFE_INTEGER;
  const data = files ? existingFile('--data', v.data!) : v.data!;
  const optionalNumber = (flag: 'lambda' | 'alpha-z' | 'scope-kappa' | 'alpha-floor', zero = false) =>
    v[flag] === undefined ? undefined : positiveNumber(`--${flag}`, v[flag], { zero });
  const options = {
    model: v.model!, data, n, batch, modes, protocol, out: v.out!,
    evalEvery: Math.min(evalEvery, Math.ceil(n / batch) * batch),
    layers: v.layers === undefined ? undefined : parseLayers(v.layers, nLayer),
    lambda: optionalNumber('lambda'),
    alphaZ: optionalNumber('alpha-z'),
    scopeKappa: optionalNumber('scope-kappa', true),
    alphaFloor: optionalNumber('alpha-floor', true),
    values: valueOptions(v),
    statsCorpus: v['stats-corpus'], stats: v.stats, statsCache: v['stats-cache'], device: device(v.device!), dtype: oneOf('--dtype', v.dtype!, dtypes),
    heldout: v.heldout === undefined || !files ? v.heldout : existingFile('--heldout', v.heldout),
    skip: v.skip === undefined ? [] : v.skip.split(',').map((m) => oneOf('--skip', m, optionalMetrics)),
    fluencyAt: oneOf('--fluency-at', v['fluency-at']!, fluencyTimes),
    fluencyDecisions: oneOf('--fluency-decisions', v['fluency-decisions']!, decisionRules),
  };
  const format = v.format !== undefined ? oneOf('--format', v.format, datasetFormats) : files ? detectFormat(data) : 'counterfact';
  return { ...options, format };
}

/** The value optimisation's flags that were given, checked. */
function valueOptions(v: Partial<Record<string, string | boolean>>): Partial<ValueOptions> {
  const values: Partial<ValueOptions> = {};
  for (const [key, f] of Object.entries(valueFlags) as [keyof ValueOptions, (typeof valueFlags)[keyof ValueOptions]][]) {
    const text = v[f.flag];
    if (typeof text !== 'string') continue;
    values[key] = f.integer ? positiveInteger(`--${f.flag}`, text) : positiveNumber(`--${f.flag}`, text, { zero: f.zero === true });
  }
  return values;
}

