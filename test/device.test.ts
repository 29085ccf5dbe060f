// The same checks on the device COMEBA_TEST_DEVICE names (default cpu), in float32 and bfloat16: parity of the
// forward with the CPU float32 forward, hooks (generation through them equals recomputation), editor
// invariants (a failed batch changes nothing), save/load across devices, and the Evaluator. scripts/device-check
// runs this file with COMEBA_TEST_DEVICE=cuda on a GPU machine. Where the variable is not `cuda`, the
// CUDA-only cross-device tests are skipped with that reason in their titles; naming cuda on a machine without
// CUDA fails.
import test from 'ava';
import {
  ConsecutiveEditor, Evaluator, HookedModel, InvalidRequestError, deviceMemory, type Dtype, type EditRequest, type EditorOptions, type EvalRecord,
} from '../lib/index.js';
import { loadNative } from '../lib/addon/native.js';
import { makeRandomCorpus, needing, referenceGeneration, tempDir, tinyGpt2, tinyLlama } from './helpers.js';

const device = (process.env.COMEBA_TEST_DEVICE ?? 'cpu') as 'cpu' | 'cuda';
const cuda = device === 'cuda';
if (cuda && !loadNative().cudaInfo().available) {
  test('COMEBA_TEST_DEVICE=cuda needs a CUDA device', (t) => t.fail('COMEBA_TEST_DEVICE=cuda but the addon sees no CUDA device (a CPU build, or no GPU)'));
}
const onCuda = needing(test, cuda, 'COMEBA_TEST_DEVICE is not cuda', 'COMEBA_REQUIRE_CUDA', 'scripts/device-check sets it on a GPU machine');

const statsDir = tempDir('comeba-stats-');
const requests: EditRequest[] = [
  { prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' },
  { prompt: 'Alice works as a doctor in', subject: 'Alice', target: ' Rome' },
];
const records: EvalRecord[] = [
  { prompt: 'The city of Paris is in', target: 'Spain', rephrase: 'Paris lies in the country of', locality: { prompt: 'Alice works as a doctor in', answer: 'London' } },
  { prompt: 'Alice works as a doctor in', target: 'Rome', rephrase: 'By profession Alice is a doctor in', locality: { prompt: 'Bob speaks', answer: 'French and lives' } },
];
const prompts = Array.from({ length: 12 }, (_, i) => Array.from({ length: 4 + (i % 7) }, (_, j) => ((i * 31 + j * 17) % 511) + 1));

/**
 * Largest |a − b| relative to the largest |b|. Bounds: float32 on the same device is bitwise; float32 across
 * devices (other kernels, TF32 off) within 1e-4; bfloat16 (8-bit mantissa, every layer rounded) within 0.2,
 * about twice what the CPU gives these fixtures (gpt2 0.056, llama 0.090).
 */
function relativeDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}
const bound = (dtype: Dtype, sameDevice: boolean) => (dtype === 'bfloat16' ? 0.2 : sameDevice ? 0 : 1e-4);

async function editorFor(model: HookedModel, options: Partial<EditorOptions> = {}): Promise<ConsecutiveEditor> {
  const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 100, 30);
  return ConsecutiveEditor.create(model, { stats: { corpus, cacheDir: statsDir }, layers: [0, 1], lambda: 50, vSteps: 10, ...options });
}


for (const [name, dir] of [['gpt2', tinyGpt2], ['llama', tinyLlama]] as const) {
  for (const dtype of ['float32', 'bfloat16'] as const) {
    const tag = `[${device} ${dtype}] ${name}`;

    test(`${tag}: logits match the CPU float32 forward`, async (t) => {
      await using reference = await HookedModel.load(dir);
      await using model = await HookedModel.load(dir, { device, dtype });
      t.is(model.info.device.split(':')[0], device);
      for (const padding of ['left', 'right'] as const) {
        const d = relativeDiff((await model.logits(prompts, { padding })).data, (await reference.logits(prompts, { padding })).data);
        t.true(d <= bound(dtype, !cuda && dtype === 'float32'), `${padding}: ${d}`);
      }
    });

    test(`${tag}: an edit changes the model, a failed batch changes nothing, generation through the hooks equals recomputation`, async (t) => {
      await using model = await HookedModel.load(dir, { device, dtype });
      await using editor = await editorFor(model);
      const before = (await model.logits(prompts)).data;
      await editor.edit(requests);
      t.notDeepEqual((await model.logits(prompts)).data, before);
      const checksum = await editor.checksum();
      await t.throwsAsync(editor.edit([requests[0], { prompt: 'no subject here', subject: 'Zed', target: 'x' }]), { instanceOf: InvalidRequestError });
      t.is(await editor.checksum(), checksum);
      t.is(editor.step, 1);
      const { tokens } = await model.generate('The city of Paris is in', { maxNewTokens: 8, stopAtEos: false });
      t.deepEqual(tokens, await referenceGeneration(model, 'The city of Paris is in', 8));
    });

    test(`${tag}: the Evaluator's scores equal a per-record computation on the same device`, async (t) => {
      await using model = await HookedModel.load(dir, { device, dtype });
      const evaluator = new Evaluator(model, { generation: true });
      const snapshot = await evaluator.snapshot(records);
      await using editor = await editorFor(model);
      await editor.edit(requests);
      const result = await evaluator.evaluate(records, snapshot);
      const oneByOne = new Evaluator(model, { generation: true, batchSize: 1 });
      t.deepEqual((await oneByOne.evaluate(records, snapshot)).records, result.records);
    });

    test(`${tag}: logits 'last' are each row's last real logits of the whole forward`, async (t) => {
      await using model = await HookedModel.load(dir, { device, dtype });
      for (const padding of ['left', 'right'] as const) {
        const all = await model.logits(prompts, { padding });
        const last = await model.logits(prompts, { padding, logits: 'last' });
        const [B, T, V] = all.shape;
        t.deepEqual(last.shape, [B, V]);
        for (let b = 0; b < B; b++) {
          const at = padding === 'left' ? T - 1 : prompts[b].length - 1;
          // The LM head on one row instead of all: the same arithmetic per row, other kernel shapes.
          const d = relativeDiff(last.data.subarray(b * V, (b + 1) * V), all.data.subarray((b * T + at) * V, (b * T + at + 1) * V));
          t.true(d <= (dtype === 'float32' ? 1e-5 : 0.02), `${padding} row ${b}: ${d}`);
        }
      }
    });

    test(`${tag}: C_accu kept in host memory gives the editor that keeps it on the device`, async (t) => {
      await using model = await HookedModel.load(dir, { device, dtype });
      const states = [];
      for (const accumulatorOnHost of [false, true]) {
        await using editor = await editorFor(model, { accumulatorOnHost });
        await editor.edit(requests);
        await editor.edit([...requests].reverse());
        states.push(await editor.state());
      }
      const [onDevice, onHost] = states;
      for (let i = 0; i < onDevice.layers.length; i++) {
        // Same device: the same operations, bitwise. On CUDA the host's rank-n update of C_accu runs on the CPU
        // (another BLAS), which moves the second batch's solve by float64 rounding only.
        const c = relativeDiff(onHost.layers[i].cAccu!.data, onDevice.layers[i].cAccu!.data);
        const d = relativeDiff(onHost.layers[i].delta.data, onDevice.layers[i].delta.data);
        t.true(cuda ? c <= 1e-12 && d <= 1e-5 : c === 0 && d === 0, `layer ${onDevice.layers[i].layer}: C_accu ${c}, ΔW ${d}`);
      }
      const memory = deviceMemory(device);
      t.true(memory.total > 0 && memory.free > 0 && memory.free <= memory.total, JSON.stringify(memory));
      if (cuda) t.true(memory.allocated > 0 && memory.peakAllocated >= memory.allocated && memory.reserved >= memory.allocated, JSON.stringify(memory));
    });

    onCuda(`${tag}: state saved on cuda loads on the CPU and the other way round, with the same logits`, async (t) => {
      const onGpu = tempDir('comeba-state-');
      const onCpu = tempDir('comeba-state-');
      let gpuLogits: Float32Array;
      {
        await using model = await HookedModel.load(dir, { device: 'cuda', dtype: 'float32' });
        await using editor = await editorFor(model);
        await editor.edit(requests);
        await editor.save(onGpu);
        gpuLogits = (await model.logits(prompts)).data;
      }
      {
        await using model = await HookedModel.load(dir);
        await using editor = await ConsecutiveEditor.load(model, onGpu);
        t.true(relativeDiff((await model.logits(prompts)).data, gpuLogits) <= 1e-4);
        await editor.edit(requests);
        await editor.save(onCpu);
      }
      await using model = await HookedModel.load(dir, { device: 'cuda', dtype });
      await using editor = await ConsecutiveEditor.load(model, onCpu);
      t.is(editor.step, 2);
    });
  }
}
