#!/usr/bin/env node
// Benchmark (not a test) for a GPU, or the CPU: per model size, with random weights made by transformers from
// a config on the device itself (no download):
//   forward    tokens/s of comeba against transformers on the same device, dtype and token batch (each runs all
//              blocks on every token and the LM head on each row's last token, and copies those logits to the host)
//   statistics E[kkᵀ] collection tokens/s over the edited layers (the cache file's write included)
//   editing    seconds per consecutive COMEBA-HK batch of 10 and its phases (mean after a warm-up batch), with
//              C_accu on the device and again kept in host memory (accumulatorOnHost), and the 10,000-edit
//              extrapolation: statistics + 1,000 × the batch mean
//   memory     peak device memory of each part (PyTorch's allocator; CUDA only) against lib/edit/memory.ts's plan
//
//   node scripts/bench-device.mjs [--device cuda] [--dtype bfloat16] [--models gpt2-xl,gptj] [--batches 3]
//                                 [--host-batches 2] [--stats-tokens 50000] [--out bench.json]
// Needs python3 with torch and transformers. Models: tiny (a 2-layer GPT-2 for trying the script on a CPU),
// gpt2-xl (1.5B: 48 layers, d 1600), gptj (6B: 28 layers, d 4096, d_ff 16384).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { importLib } from './import-lib.mjs';

const { values: args } = parseArgs({
  options: {
    device: { type: 'string', default: 'cuda' },
    dtype: { type: 'string', default: 'bfloat16' },
    models: { type: 'string', default: 'gpt2-xl,gptj' },
    batches: { type: 'string', default: '3' },
    'host-batches': { type: 'string', default: '2' },
    'stats-tokens': { type: 'string', default: '50000' },
    'forward-batch': { type: 'string', default: '8' },
    'forward-seq': { type: 'string', default: '512' },
    repeats: { type: 'string', default: '10' },
    out: { type: 'string' },
  },
});
const n = (k) => Number(args[k]);

const configs = {
  tiny: { cls: 'GPT2', config: { n_embd: 64, n_layer: 4, n_head: 4, n_positions: 256, vocab_size: 50257 } },
  'gpt2-xl': { cls: 'GPT2', config: { n_embd: 1600, n_layer: 48, n_head: 25, n_positions: 1024, vocab_size: 50257 } },
  gptj: { cls: 'GPTJ', config: { n_embd: 4096, n_layer: 28, n_head: 16, rotary_dim: 64, n_positions: 2048, vocab_size: 50400 } },
};

// transformers' side: the random model on the device, its forward timing and peak memory, then the checkpoint.
const python = String.raw`
import json, sys, time, torch, transformers
spec, out = json.loads(sys.argv[1]), sys.argv[2]
device, dtype = torch.device(spec["device"]), getattr(torch, spec["dtype"])
cuda = device.type == "cuda"
sync = torch.cuda.synchronize if cuda else (lambda: None)
Config, Model = getattr(transformers, spec["cls"] + "Config"), getattr(transformers, spec["cls"] + "LMHeadModel" if spec["cls"] == "GPT2" else spec["cls"] + "ForCausalLM")
torch.manual_seed(0)
torch.set_default_dtype(dtype)
t = time.perf_counter()
with device:
    model = Model(Config(**spec["config"])).eval()
sync(); init = time.perf_counter() - t
torch.set_default_dtype(torch.float32)
x = torch.tensor(spec["ids"], device=device)
def forward():
    with torch.inference_mode():
        return model(x, logits_to_keep=1).logits[:, -1].float().cpu()
if cuda: torch.cuda.reset_peak_memory_stats()
weights = torch.cuda.memory_allocated() if cuda else -1
for _ in range(2): forward()
times = []
for _ in range(spec["repeats"]):
    sync(); t = time.perf_counter(); forward(); sync(); times.append(time.perf_counter() - t)
peak = torch.cuda.max_memory_allocated() if cuda else -1
t = time.perf_counter()
model.save_pretrained(out)
save = time.perf_counter() - t
print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "seconds": sorted(times)[len(times) // 2],
                  "torch": torch.__version__, "transformers": transformers.__version__, "attn": model.config._attn_implementation,
                  "weightsBytes": weights, "peakBytes": peak, "initSeconds": init, "saveSeconds": save}))
`;

const { HookedModel, ConsecutiveEditor, Statistics, defaultLayers, deviceMemory, resetPeakMemory, editorMemoryPlan } = await importLib('index');
const work = mkdtempSync(join(tmpdir(), 'comeba-bench-device-'));
const cuda = args.device.startsWith('cuda');
const gib = (b) => (b < 0 ? null : +(b / 2 ** 30).toFixed(3));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const peak = () => (cuda ? deviceMemory(args.device).peakAllocated : -1);
const resetPeak = () => cuda && resetPeakMemory(args.device);

const testbed = JSON.parse(readFileSync('testbed/counterfact.json', 'utf8'));
const requests = testbed.map((r) => ({ prompt: r.prompt, subject: r.subject, target: r.target_new }));
const corpusLines = testbed.flatMap((r) => [`${r.prompt} ${r.ground_truth}. ${r.locality_prompt} ${r.locality_ground_truth}.`]);
const corpus = join(work, 'corpus.txt');
// Repeated so that any --stats-tokens is reachable; documents one per line.
writeFileSync(corpus, Array.from({ length: 20 }, () => corpusLines.join('\n')).join('\n'));

async function editRun(model, stats, layers, accumulatorOnHost, batches) {
  resetPeak();
  const before = cuda ? deviceMemory(args.device).allocated : -1;
  const t = performance.now();
  const editor = await ConsecutiveEditor.create(model, { stats, accumulatorOnHost });
  const create = (performance.now() - t) / 1000;
  const per = [];
  const phases = { values: 0, keys: 0, solves: 0, alpha: 0, total: 0 };
  for (let b = 0; b <= batches; b++) {
    const report = await editor.edit(requests.slice(b * 10, b * 10 + 10));
    if (b === 0) continue; // warm-up
    per.push(report.seconds.total);
    for (const k of Object.keys(phases)) phases[k] += report.seconds[k] / batches;
  }
  const plan = editorMemoryPlan(model.info, editor.options, { dtype: model.info.dtype, accumulatorOnHost });
  const result = {
    accumulatorOnHost, layers, accumulatorDtype: editor.options.accumulatorDtype, createSeconds: +create.toFixed(3),
    secondsPerBatch: +(phases.total).toFixed(3), batches: per.map((s) => +s.toFixed(3)),
    phases: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, +v.toFixed(3)])),
    peakGiB: gib(peak() - before), planGiB: gib(plan.device.total),
  };
  await editor.dispose();
  return result;
}

async function bench(name) {
  const spec = configs[name];
  if (!spec) throw new Error(`unknown model ${name} (${Object.keys(configs).join(', ')})`);
  const [B, T] = [n('forward-batch'), n('forward-seq')];
  const vocab = spec.config.vocab_size;
  const ids = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, i) => (i * 7919 + b * 104729 + 13) % 50257));
  const dir = join(work, name);
  const py = spawnSync('python3', ['-c', python, JSON.stringify({ ...spec, device: args.device, dtype: args.dtype, ids, repeats: n('repeats') }), dir], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (py.status !== 0) throw new Error(`transformers side failed:\n${py.stderr.split('\n').slice(-8).join('\n')}`);
  const ref = JSON.parse(py.stdout.trim().split('\n').pop());
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join('test/fixtures/tiny-gpt2', f), join(dir, f));

  const row = { model: name, params: ref.params, device: args.device, dtype: args.dtype, vocab };
  let t = performance.now();
  const model = await HookedModel.load(dir, { device: args.device, dtype: args.dtype });
  row.loadSeconds = +((performance.now() - t) / 1000).toFixed(2);
  try {
    // Forward: the same ids, the LM head on the last token only, logits copied to the host, median of repeats.
    resetPeak();
    const weights = cuda ? deviceMemory(args.device).allocated : -1;
    for (let i = 0; i < 2; i++) await model.logits(ids, { logits: 'last' });
    const times = [];
    for (let i = 0; i < n('repeats'); i++) {
      t = performance.now();
      await model.logits(ids, { logits: 'last' });
      times.push((performance.now() - t) / 1000);
    }
    const ours = median(times);
    row.forward = {
      tokens: B * T, comebaTokensPerSecond: Math.round((B * T) / ours), transformersTokensPerSecond: Math.round((B * T) / ref.seconds),
      ratio: +(ref.seconds / ours).toFixed(3), transformers: `${ref.transformers} (${ref.attn}, torch ${ref.torch})`,
      weightsGiB: gib(weights), comebaPeakGiB: gib(peak()), transformersPeakGiB: gib(ref.peakBytes), transformersWeightsGiB: gib(ref.weightsBytes),
    };
    console.log(`${name}: forward ${row.forward.comebaTokensPerSecond} vs ${row.forward.transformersTokensPerSecond} tokens/s (ratio ${row.forward.ratio})`);

    // Statistics over the preset's edited layers.
    const layers = defaultLayers(model.info);
    const accumulatorDtype = model.info.dFf > 8192 ? 'float32' : 'float64';
    resetPeak();
    t = performance.now();
    const stats = await Statistics.collect(model, { corpus, layers, dtype: accumulatorDtype, maxTokens: n('stats-tokens'), cacheDir: join(work, 'stats'), batchSize: 32, maxLength: 128 });
    const statsSeconds = (performance.now() - t) / 1000;
    row.statistics = {
      layers, dtype: accumulatorDtype, tokens: stats.provenance.tokens, seconds: +statsSeconds.toFixed(2),
      tokensPerSecond: Math.round(stats.provenance.tokens / statsSeconds), peakGiB: gib(peak() - weights),
    };
    console.log(`${name}: statistics ${row.statistics.tokensPerSecond} tokens/s over layers ${layers.join(',')}`);

    row.editing = [];
    for (const [onHost, batches] of [[false, n('batches')], [true, n('host-batches')]]) {
      if (batches <= 0 || (onHost && !cuda)) continue;
      try {
        const r = await editRun(model, stats, layers, onHost, batches);
        row.editing.push(r);
        console.log(`${name}: ${r.secondsPerBatch} s per batch of 10 (C_accu on the ${onHost ? 'host' : 'device'}), phases ${JSON.stringify(r.phases)}, peak ${r.peakGiB} GiB (plan ${r.planGiB})`);
      } catch (err) {
        row.editing.push({ accumulatorOnHost: onHost, error: `${err.code ?? ''} ${err.message}` });
        console.log(`${name}: editing failed (C_accu on the ${onHost ? 'host' : 'device'}): ${err.message}`);
      }
    }
    const main = row.editing.find((r) => !r.accumulatorOnHost && r.secondsPerBatch);
    if (main) {
      row.tenThousandEdits = { seconds: Math.round(statsSeconds + 1000 * main.secondsPerBatch), hours: +((statsSeconds + 1000 * main.secondsPerBatch) / 3600).toFixed(2), basis: 'statistics as measured + 1,000 × seconds per batch of 10' };
    }
    await stats.dispose();
  } finally {
    await model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  return row;
}

const rows = [];
try {
  for (const name of args.models.split(',')) {
    try {
      rows.push(await bench(name));
    } catch (err) {
      rows.push({ model: name, error: err.message });
      console.log(`${name}: failed: ${err.message}`);
    }
    if (args.out) writeFileSync(args.out, JSON.stringify(rows, null, 2));
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(JSON.stringify(rows, null, 2));
process.exitCode = rows.some((r) => r.error || r.editing?.some((e) => e.error)) ? 1 : 0;
