#!/usr/bin/env node
// Benchmark (not a test): forward tokens/s of comeba against Hugging Face transformers in Python, on the
// same machine, in the same run, on a model with random weights: GPT-2 124M (gpt2's own config) or a Llama
// of 125M (d_model 768, 12 layers, 12 heads over 4 kv heads, d_ff 2048, vocab 32000).
// Prints both figures and their ratio (comeba / transformers; ≥ 1.0 means comeba is at least as fast), then
// E[kkᵀ] collection tokens/s over the default edit layers (Statistics.collect on the same token rows, the cache
// file's write included) with float32 and with float64 products, as a ratio to comeba's forward tokens/s.
//
//   node scripts/bench-forward.mjs [--arch gpt2|llama] [--batch 4] [--seq 256] [--repeats 5] [--threads N]
// Needs python3 with torch and transformers (pip install --index-url file:///opt/pypi/simple torch==2.13.0+cpu transformers).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { importLib } from './import-lib.mjs';

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'gpt2' },
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '256' },
    repeats: { type: 'string', default: '5' },
    threads: { type: 'string', default: String(availableParallelism()) },
  },
});
const [batch, seq, repeats, threads] = [values.batch, values.seq, values.repeats, values.threads].map(Number);
const archs = {
  gpt2: { vocab: 50257, tokenizerFrom: 'test/fixtures/tiny-gpt2', python: 'GPT2LMHeadModel(GPT2Config())' },
  llama: {
    vocab: 32000, tokenizerFrom: 'test/fixtures/tiny-llama',
    python: 'LlamaForCausalLM(LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=2048))',
  },
};
const arch = archs[values.arch];
if (!arch) throw new Error(`--arch must be one of ${Object.keys(archs).join(', ')}`);

// One random batch of token ids, shared by both sides.
const ids = Array.from({ length: batch }, (_, b) => Array.from({ length: seq }, (_, i) => (i * 7919 + b * 104729) % arch.vocab));

const python = String.raw`
import json, sys, time, torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
out, ids, repeats, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
torch.set_num_threads(threads)
model = ${arch.python}.eval()
model.save_pretrained(out)
x = torch.tensor(ids)
times = []
with torch.inference_mode():
    model(x)  # warm-up
    for _ in range(repeats):
        t = time.perf_counter(); model(x); times.append(time.perf_counter() - t)
print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "seconds": sorted(times)[len(times) // 2],
                  "torch": torch.__version__, "attn": model.config._attn_implementation}))
`;

const dir = mkdtempSync(join(tmpdir(), 'comeba-bench-'));
try {
  const py = spawnSync('python3', ['-c', python, dir, JSON.stringify(ids), String(repeats), String(threads)], { encoding: 'utf8' });
  if (py.status !== 0) throw new Error(`python side failed:\n${py.stderr}`);
  const ref = JSON.parse(py.stdout.trim().split('\n').pop());
  // The tokenizer is irrelevant to a forward pass over ids; the fixture's keeps the folder loadable.
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(arch.tokenizerFrom, f), join(dir, f));

  const { loadNative } = await importLib('addon/native');
  loadNative().setThreads(threads);
  const { HookedModel, Statistics, defaultLayers } = await importLib('index');
  const model = await HookedModel.load(dir);
  await model.logits(ids); // warm-up
  const times = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await model.logits(ids);
    times.push((performance.now() - t) / 1000);
  }
  const ours = times.sort((a, b) => a - b)[Math.floor(times.length / 2)];

  // Statistics over `repeats` × `batch` documents of up to `seq` tokens (the fixture tokenizer's text of the rows'
  // ids; the tokens counted are those it gives back), `batch` documents per forward, each into a fresh cache.
  const layers = defaultLayers(model.info);
  const corpus = join(dir, 'corpus.txt');
  writeFileSync(corpus, Array.from({ length: repeats }, () => ids.map((row) => model.tokenizer.decode(row.map((id) => id % 512)).replace(/\s+/g, ' '))).flat().join('\n'));
  const statistics = {};
  for (const products of ['float32', 'float64']) {
    const t = performance.now();
    const stats = await Statistics.collect(model, { corpus, layers, products, batchSize: batch, maxLength: seq, cacheDir: join(dir, `stats-${products}`) });
    statistics[products] = stats.provenance.tokens / ((performance.now() - t) / 1000);
    await stats.dispose();
  }
  await model.dispose();

  const tokens = batch * seq;
  const rows = [
    ['comeba (libtorch, N-API)', tokens / ours, ours],
    [`transformers ${ref.attn} (torch ${ref.torch})`, tokens / ref.seconds, ref.seconds],
  ];
  console.log(`${values.arch === 'gpt2' ? 'GPT-2' : 'Llama'} ${(ref.params / 1e6).toFixed(0)}M random weights, float32, CPU, batch ${batch} × ${seq} tokens, ${threads} threads, median of ${repeats}`);
  for (const [name, tps, s] of rows) console.log(`  ${name.padEnd(36)} ${tps.toFixed(0).padStart(8)} tokens/s  (${(s * 1000).toFixed(0)} ms/forward)`);
  console.log(`  ratio comeba / transformers: ${(ref.seconds / ours).toFixed(3)}`);
  console.log(`E[kkᵀ] over layers ${layers.join(', ')} (d_ff ${model.info.dFf}), float64 sums:`);
  for (const [products, tps] of Object.entries(statistics)) {
    console.log(`  ${`${products} products`.padEnd(36)} ${tps.toFixed(0).padStart(8)} tokens/s  (statistics / forward: ${(tps / (tokens / ours)).toFixed(3)})`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
