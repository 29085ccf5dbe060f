// The editor's memory plan: what ConsecutiveEditor.create will hold on the model's device and in host memory,
// from the model's sizes and the hyperparameters alone, so that an editor that cannot fit fails before the
// statistics are collected (hours on a large model) rather than at the first allocation that fails.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { OutOfMemoryError } from '../errors.js';
import { formatBytes, readTextIfAny } from '../io/files.js';
import { loadNative } from '../addon/native.js';
import type { DeviceMemory } from '../addon/types.js';
import type { Device, Dtype, ModelInfo } from '../model/types.js';
import type { EditorHyperparameters } from './options.js';

export type { DeviceMemory };

export function deviceMemory(device: Device = 'cpu'): DeviceMemory {
  return loadNative().deviceMemory(device);
}

/** Starts the CUDA peak figures of deviceMemory afresh (nothing on the CPU). */
export function resetPeakMemory(device: Device): void {
  loadNative().resetPeakMemory(device);
}

/**
 * The batch the value-step estimate assumes: 10 requests, each 6 template rows and a KL row, whose blocks above
 * the last edited layer run (with gradients) from the subject's last token on: 12 tokens per row, 3 target
 * tokens. Calibrated on an H200 (bfloat16, the testbed's prompts): the plan is 16.8 GiB where GPT-J's editor
 * peaked at 16.8 GiB, 4.4 GiB where GPT2-XL's peaked at 4.1 GiB (scripts/bench-device.mjs, docs/benchmarks.md).
 */
export const planBatch = { requests: 10, rowsPerRequest: 7, tokensPerRow: 12, targetTokens: 3 } as const;

export interface MemoryPlan {
  /** Bytes on the model's device beyond the weights (on a CPU model, these are host memory too). */
  device: { cAccu: number; delta: number; prior: number; solve: number; factors: number; values: number; total: number };
  /**
   * Bytes in host memory: E[kkᵀ] as loaded, λ·E[kkᵀ] kept for reset, C_accu with accumulatorOnHost, and the keys
   * held for the next incremental save (after a save or load; at most d_ff columns per layer, then dropped), and
   * with the retarget rule E[kkᵀ]'s Cholesky factor (its key history grows by d_ff float64 per edit and layer).
   */
  host: { statistics: number; prior: number; cAccu: number; heldKeys: number; reedit: number; total: number };
}

type PlanModel = Pick<ModelInfo, 'nLayer' | 'dModel' | 'dFf' | 'nHead' | 'vocabSize'>;
type PlanHyper = Pick<EditorHyperparameters, 'mode' | 'layers' | 'accumulatorDtype'> & Partial<Pick<EditorHyperparameters, 'reedit'>>;

/**
 * Per edited layer (F = d_ff, C = d_model): C_accu F² in its dtype; ΔW C·F float32; λ·E[kkᵀ] F² float64 (host,
 * for reset; memit's fixed C on the device); E[kkᵀ] F² float64 (host); held keys < F columns of F float64 (host,
 * for the next incremental save; not in memit, which saves no C_accu). One layer's solve at a time: C_accu + KKᵀ
 * and its Cholesky factor, F² float64 each, plus C_accu's float64 copy unless it already is one on the device. On
 * the CPU (`onCpu`), C_accu's factor is kept between batches (memit's C's; not with a float32 C_accu), F² float64
 * per layer.
 * The value step keeps activations of the blocks above the last edited layer for `planBatch` (an estimate:
 * ~14·C + 3·F values per token and block in the model's dtype and the attention weights; the log-probabilities at
 * the target tokens and the KL rows' subjects, three float32 copies of V each).
 */
export function editorMemoryPlan(info: PlanModel, hyper: PlanHyper, options: { dtype: Dtype; accumulatorOnHost: boolean; onCpu?: boolean }): MemoryPlan {
  const F = info.dFf, C = info.dModel, L = hyper.layers.length;
  const accumulates = hyper.mode !== 'memit';
  const accBytes = hyper.accumulatorDtype === 'float64' ? 8 : 4;
  const square64 = F * F * 8;
  const cAccu = accumulates ? L * F * F * accBytes : 0;
  const onDevicePrior = hyper.mode === 'memit' && !options.accumulatorOnHost ? L * square64 : 0;
  const copies = 2 + (options.accumulatorOnHost || !accumulates ? 1 : accBytes === 8 ? 0 : 1);
  const dtypeBytes = options.dtype === 'float32' ? 4 : 2;
  const tokens = planBatch.requests * planBatch.rowsPerRequest * planBatch.tokensPerRow;
  const blocks = Math.max(0, info.nLayer - 1 - Math.max(...hyper.layers));
  const perTokenBlock = (14 * C + 3 * F + info.nHead * planBatch.tokensPerRow) * dtypeBytes;
  const scored = planBatch.requests * ((planBatch.rowsPerRequest - 1) * planBatch.targetTokens + 1);
  const values = tokens * blocks * perTokenBlock + 3 * scored * info.vocabSize * 4;
  const device = {
    cAccu: options.accumulatorOnHost ? 0 : cAccu,
    delta: L * C * F * 4,
    prior: onDevicePrior,
    solve: copies * square64,
    factors: options.onCpu && (!accumulates || accBytes === 8) ? L * square64 : 0,
    values,
    total: 0,
  };
  device.total = device.cAccu + device.delta + device.prior + device.solve + device.factors + device.values;
  const host = {
    statistics: L * square64,
    prior: accumulates || options.accumulatorOnHost ? L * square64 : 0,
    cAccu: options.accumulatorOnHost ? cAccu : 0,
    heldKeys: accumulates ? L * square64 : 0,
    reedit: hyper.reedit === 'retarget' ? L * square64 : 0,
    total: 0,
  };
  host.total = host.statistics + host.prior + host.cAccu + host.heldKeys + host.reedit;
  return { device, host };
}


/**
 * Throws OutOfMemoryError, naming the numbers, when the plan does not fit: on the model's device `budget` bytes
 * (default: what it has free, PyTorch's cached blocks included), and in host memory what the machine has available.
 */
export function checkMemoryPlan(plan: MemoryPlan, device: Device, options: { budget?: number; accumulatorOnHost: boolean; accumulatorDtype: string }): void {
  const onCpu = device === 'cpu';
  const host = hostMemory();
  const dev = onCpu ? host : deviceMemory(device);
  const needed = onCpu ? plan.device.total + plan.host.total : plan.device.total;
  const free = dev.free < 0 ? Infinity : dev.free + Math.max(0, dev.reserved - dev.allocated);
  const available = options.budget ?? free;
  if (needed > available) {
    const d = plan.device;
    const parts = [
      d.cAccu ? `C_accu ${formatBytes(d.cAccu)}` : '', `ΔW ${formatBytes(d.delta)}`, d.prior ? `memit's C ${formatBytes(d.prior)}` : '',
      `one layer's solve ${formatBytes(d.solve)}`, d.factors ? `kept Cholesky factors ${formatBytes(d.factors)}` : '', `the value step ~${formatBytes(d.values)} for a batch of ${planBatch.requests}`,
      onCpu ? `statistics, λ·E[kkᵀ] and held keys ${formatBytes(plan.host.total)}` : '',
    ].filter((s) => s !== '');
    const hints = [
      !options.accumulatorOnHost && !onCpu && d.cAccu > 0 ? `accumulatorOnHost: true keeps C_accu (${formatBytes(d.cAccu)}) in host memory` : '',
      options.accumulatorDtype === 'float64' && plan.device.cAccu + plan.host.cAccu > 0 ? "accumulatorDtype: 'float32' halves C_accu" : '',
      'fewer edited layers, or a larger device',
    ].filter((s) => s !== '');
    throw new OutOfMemoryError(
      `the editor needs about ${formatBytes(needed)} on ${device} (${parts.join(', ')}) but ${formatBytes(available)} ` +
        `${options.budget !== undefined ? 'is the memoryBudget' : 'is free'}; try ${hints.join('; ')}`,
    );
  }
  if (!onCpu && host.free >= 0 && plan.host.total > host.free) {
    throw new OutOfMemoryError(
      `the editor needs about ${formatBytes(plan.host.total)} of host memory (E[kkᵀ] ${formatBytes(plan.host.statistics)}, λ·E[kkᵀ] ` +
        `${formatBytes(plan.host.prior)}${plan.host.cAccu ? `, C_accu ${formatBytes(plan.host.cAccu)}` : ''}` +
        `${plan.host.heldKeys ? `, keys held for incremental saves ${formatBytes(plan.host.heldKeys)}` : ''}) but ${formatBytes(host.free)} is available`,
    );
  }
}

/** The CPU's deviceMemory, its free bytes bounded by the process's cgroup (a container's memory limit). */
export function hostMemory(): DeviceMemory {
  const host = deviceMemory('cpu');
  const cgroup = cgroupMemory();
  if (!cgroup) return host;
  const free = Math.max(0, cgroup.limit - cgroup.usage);
  return { ...host, free: host.free < 0 ? free : Math.min(host.free, free), total: host.total < 0 ? cgroup.limit : Math.min(host.total, cgroup.limit) };
}

// Limits at or above this are "no limit" (cgroup v1 writes 2^63 rounded down to a page).
const unlimited = 2 ** 62;

/**
 * The tightest memory limit of this process's cgroup and its ancestors, with that group's usage: cgroup v2
 * (`memory.max`, `memory.current` along the path in /proc/self/cgroup's `0::` line) or v1 (`memory.limit_in_bytes`,
 * `memory.usage_in_bytes` under the memory controller). Undefined without a limit, or where none can be read.
 */
export function cgroupMemory(root = '/sys/fs/cgroup', self = '/proc/self/cgroup'): { limit: number; usage: number } | undefined {
  const lines = readTextIfAny(self)?.split('\n') ?? [];
  const v2 = existsSync(join(root, 'cgroup.controllers'));
  const path = v2
    ? lines.find((l) => l.startsWith('0::'))?.slice(3)
    : lines.map((l) => l.split(':')).find((f) => f[1]?.split(',').includes('memory'))?.[2];
  const base = v2 ? root : join(root, 'memory');
  const [limitFile, usageFile] = v2 ? ['memory.max', 'memory.current'] : ['memory.limit_in_bytes', 'memory.usage_in_bytes'];
  let best: { limit: number; usage: number } | undefined;
  // From the group itself up to the root of the mount (in a container the mount's root is its own group).
  const parts = (path ?? '/').split('/').filter(Boolean);
  for (let n = parts.length; n >= 0; n--) {
    const dir = join(base, ...parts.slice(0, n));
    const limit = Number(readTextIfAny(join(dir, limitFile))?.trim());
    const usage = Number(readTextIfAny(join(dir, usageFile))?.trim());
    if (!Number.isFinite(limit) || limit <= 0 || limit >= unlimited || !Number.isFinite(usage)) continue;
    if (!best || limit - usage < best.limit - best.usage) best = { limit, usage };
  }
  return best;
}

