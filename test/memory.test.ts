// The editor's memory plan (lib/edit/memory.ts): its arithmetic on the reference models, the early refusal that
// names the numbers (before any statistics are collected), and the device memory query.
import test from 'ava';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConsecutiveEditor, HookedModel, OutOfMemoryError, deviceMemory, editorMemoryPlan, type ModelInfo } from '../lib/index.js';
import { cgroupMemory } from '../lib/edit/memory.js';
import { resolveHyperparameters } from '../lib/edit/options.js';
import { makeRandomCorpus, tempDir, tinyGpt2 } from './helpers.js';

const gptj = { architecture: 'gptj', nLayer: 28, dModel: 4096, dFf: 16384, nHead: 16, vocabSize: 50400, dtype: 'bfloat16', device: 'cuda' } as ModelInfo;

test('the plan of GPT-J: C_accu, ΔW and the solve by formula, and accumulatorOnHost moves exactly C_accu to the host', (t) => {
  const hyper = resolveHyperparameters(gptj, {}, undefined);
  t.deepEqual(hyper.layers, [3, 4, 5, 6, 7, 8]);
  t.is(hyper.accumulatorDtype, 'float32');
  const F = 16384;
  const onDevice = editorMemoryPlan(gptj, hyper, { dtype: 'bfloat16', accumulatorOnHost: false });
  const onHost = editorMemoryPlan(gptj, hyper, { dtype: 'bfloat16', accumulatorOnHost: true });
  t.is(onDevice.device.cAccu, 6 * F * F * 4);                    // 6 GiB
  t.is(onDevice.device.delta, 6 * 4096 * F * 4);
  t.is(onDevice.device.solve, 3 * F * F * 8);                    // float64 copy, C + KKᵀ, its factor
  t.is(onDevice.host.statistics + onDevice.host.prior, 2 * 6 * F * F * 8);
  t.is(onDevice.host.heldKeys, 6 * F * F * 8, 'keys held for an incremental save: < d_ff float64 columns per layer');
  t.is(onDevice.host.total, onDevice.host.statistics + onDevice.host.prior + onDevice.host.heldKeys);
  t.is(onHost.device.cAccu, 0);
  t.is(onHost.host.cAccu, onDevice.device.cAccu);
  t.is(onDevice.device.total - onHost.device.total, onDevice.device.cAccu);
  // memit never accumulates; its fixed C sits on the device unless kept on the host.
  const memit = editorMemoryPlan(gptj, { ...hyper, mode: 'memit' }, { dtype: 'bfloat16', accumulatorOnHost: false });
  t.is(memit.device.cAccu, 0);
  t.is(memit.device.prior, 6 * F * F * 8);
  t.is(memit.host.heldKeys, 0, 'memit saves no C_accu, so holds no keys');
  t.is(editorMemoryPlan(gptj, { ...hyper, mode: 'memit' }, { dtype: 'bfloat16', accumulatorOnHost: true }).device.prior, 0);
  // On the CPU the solves keep each layer's Cholesky factor between batches (float64 C_accu, or memit's C).
  t.is(onDevice.device.factors, 0);
  const cpu = (mode: 'comeba-hk' | 'memit', accumulatorDtype: 'float32' | 'float64') =>
    editorMemoryPlan(gptj, { ...hyper, mode, accumulatorDtype }, { dtype: 'float32', accumulatorOnHost: false, onCpu: true }).device;
  t.is(cpu('comeba-hk', 'float64').factors, 6 * F * F * 8);
  t.is(cpu('memit', 'float32').factors, 6 * F * F * 8);
  t.is(cpu('comeba-hk', 'float32').factors, 0, 'a float32 C_accu is solved afresh each batch');
  const elsewhere = editorMemoryPlan(gptj, { ...hyper, accumulatorDtype: 'float64' }, { dtype: 'float32', accumulatorOnHost: false }).device;
  t.is(cpu('comeba-hk', 'float64').total, elsewhere.total + 6 * F * F * 8);
});

test('an editor that does not fit its memoryBudget is refused before its statistics are collected, with the numbers', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const cacheDir = tempDir('comeba-stats-');
  const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 50, 20);
  const err = await t.throwsAsync(ConsecutiveEditor.create(model, { stats: { corpus, cacheDir }, layers: [0, 1], memoryBudget: 4096 }), { instanceOf: OutOfMemoryError });
  t.regex(err!.message, /the editor needs about [\d.]+ [KM]iB on cpu \(C_accu [\d.]+ [KM]iB, ΔW [\d.]+ KiB, one layer's solve .*\) but 4\.0 KiB is the memoryBudget/);
  t.deepEqual(readdirSync(cacheDir), [], 'no statistics were collected');
  t.is(model.disposed, false);
  // A budget that holds the plan: the editor is made and edits.
  const plan = editorMemoryPlan(model.info, resolveHyperparameters(model.info, { layers: [0, 1] }, undefined), { dtype: 'float32', accumulatorOnHost: false, onCpu: true });
  await using editor = await ConsecutiveEditor.create(model, { stats: { corpus, cacheDir }, layers: [0, 1], memoryBudget: plan.device.total + plan.host.total });
  await editor.edit([{ prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' }]);
  t.is(editor.step, 1);
});

test('deviceMemory on the CPU is the machine\'s available and total memory', (t) => {
  const m = deviceMemory('cpu');
  t.true(m.total > 0 && m.free > 0 && m.free <= m.total, JSON.stringify(m));
  t.is(m.allocated, -1);
  t.throws(() => deviceMemory('tpu' as 'cpu'), { message: /unknown device 'tpu'/ });
});

// A container's memory limit bounds what the host has free: cgroup v2 and v1 trees written here, as the kernel shows them.
test('the host figure reads the cgroup memory limit (v2 along the group path, v1 under the memory controller)', (t) => {
  const fake = (files: Record<string, string>) => {
    const dir = tempDir('comeba-cgroup-');
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      writeFileSync(join(dir, name), text);
    }
    return { root: join(dir, 'sys'), self: join(dir, 'self-cgroup') };
  };
  const gib = 1024 ** 3;
  // v2: the group's own limit, and a tighter one of its parent
  const v2 = fake({
    'sys/cgroup.controllers': 'cpu memory\n', 'self-cgroup': '0::/jobs/comeba\n',
    'sys/jobs/comeba/memory.max': `${4 * gib}\n`, 'sys/jobs/comeba/memory.current': `${1 * gib}\n`,
    'sys/jobs/memory.max': `${2 * gib}\n`, 'sys/jobs/memory.current': `${1.5 * gib}\n`,
  });
  t.deepEqual(cgroupMemory(v2.root, v2.self), { limit: 2 * gib, usage: 1.5 * gib });
  const v2Unlimited = fake({ 'sys/cgroup.controllers': 'memory\n', 'self-cgroup': '0::/\n', 'sys/memory.max': 'max\n', 'sys/memory.current': '123\n' });
  t.is(cgroupMemory(v2Unlimited.root, v2Unlimited.self), undefined);
  // v1: the memory controller's line names the group; its mount root is the container's own group
  const v1 = fake({ 'self-cgroup': '4:memory:/docker/abc\n0::/\n', 'sys/memory/memory.limit_in_bytes': `${8 * gib}\n`, 'sys/memory/memory.usage_in_bytes': `${3 * gib}\n` });
  t.deepEqual(cgroupMemory(v1.root, v1.self), { limit: 8 * gib, usage: 3 * gib });
  const v1Unlimited = fake({ 'self-cgroup': '4:memory:/\n', 'sys/memory/memory.limit_in_bytes': '9223372036854771712\n', 'sys/memory/memory.usage_in_bytes': '5\n' });
  t.is(cgroupMemory(v1Unlimited.root, v1Unlimited.self), undefined);
  t.is(cgroupMemory(join(tempDir(), 'none'), join(tempDir(), 'none')), undefined);
});
