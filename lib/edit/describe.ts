// What editing a checkpoint will take, from its config.json and safetensors headers alone (no weights): the
// editor's resolved settings and memory plan, for `comeba inspect --model` before anything heavy runs.
import { countParameters, readCheckpointSizes, type CheckpointSizes } from '../io/checkpoint.js';
import type { Dtype, ModelInfo } from '../model/types.js';
import { editorMemoryPlan, type MemoryPlan } from './memory.js';
import { lambdaFor, readCheckpointDefaults, resolveHyperparameters, type EditorHyperparameters } from './options.js';

export interface CheckpointDescription {
  info: CheckpointSizes;
  /** Parameters counted from the safetensors headers. */
  parameters: number;
  storedDtypes: string[];
  editor: EditorHyperparameters;
  /** Where the editor's λ comes from, in words: comeba.json, or the λ rule from the family's reference model. */
  lambdaSource: string;
  /** Bytes: the weights in `dtype`; the editor's memory plan (memory.ts) with C_accu on the device and on the host. */
  memory: { weights: number; editor: MemoryPlan; editorOnHost: MemoryPlan };
}

export function describeCheckpoint(dir: string, dtype: Dtype = 'float32'): CheckpointDescription {
  const info = readCheckpointSizes(dir);
  const { parameters, storedDtypes } = countParameters(dir);
  const defaults = readCheckpointDefaults(dir);
  const editor = resolveHyperparameters({ ...info, eosTokenId: -1, bosTokenId: -1, editedModule: '', editedWeightShape: [0, 0], device: 'cpu', dtype } as ModelInfo, {}, defaults);
  const { reference } = lambdaFor(info, editor.mode);
  const lambdaSource = defaults.lambda?.[editor.mode] !== undefined ? 'from comeba.json'
    : reference.dFf === info.dFf ? `the paper's, as on ${reference.name}`
    : `${reference.name}'s ${reference.lambda} × d_ff ${info.dFf} / ${reference.dFf}`;
  return {
    info, parameters, storedDtypes, editor, lambdaSource,
    memory: {
      weights: parameters * (dtype === 'float32' ? 4 : 2),
      editor: editorMemoryPlan(info, editor, { dtype, accumulatorOnHost: false }),
      editorOnHost: editorMemoryPlan(info, editor, { dtype, accumulatorOnHost: true }),
    },
  };
}
