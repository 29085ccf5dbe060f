// The whole native surface of the addon, as TypeScript sees it. Only lib/ talks to these objects; the public
// classes wrap them with validation, typed errors and disposal. Imports nothing: the public API builds on these
// shapes, never the other way round.

export interface NativeTensor {
  data: Float32Array;
  shape: number[];
}

export type NativeHookAction = 'recordInput' | 'recordOutput' | 'add' | 'replaceWeight';

export interface NativeHookSpec {
  point: string;
  action: NativeHookAction;
  positions?: number[][];
  data?: Float32Array;
  shape?: number[];
}

export interface NativeForwardResult extends NativeTensor {
  records: (NativeTensor | null)[];
}

export interface NativeModelInfo {
  architecture: 'gpt2' | 'gptj' | 'llama' | 'mistral' | 'qwen2' | 'qwen3';
  nLayer: number;
  dModel: number;
  dFf: number;
  nHead: number;
  vocabSize: number;
  contextLength: number;
  eosTokenId: number;
  bosTokenId: number;
  editedModule: string;
  editedWeightShape: [number, number];
  device: string;
  dtype: string;
}

export interface NativeHookedModel {
  info(): NativeModelInfo;
  forward(batch: number[][], options: { padding: 'left' | 'right'; hooks?: NativeHookSpec[]; logits?: 'all' | 'last' }): Promise<NativeForwardResult>;
  scoreTargets(prompts: number[][], targets: number[][]): Promise<{ argmax: number[][]; meanNll: number[] }>;
  generate(
    prompt: number[], options: { maxNewTokens: number; stopAtEos: boolean; topK: number; topP: number; temperature: number; seed: number; decisions: 'exact' | 'settled' },
    onToken?: (token: number) => boolean,
  ): Promise<number[]>;
  generateGreedy(prompts: number[][], maxNewTokens: number[], options?: { decisions?: 'exact' | 'settled' }): Promise<number[][]>;
  dispose(): void;
}

export interface NativeAddon {
  buildInfo(): { torchVersion: string; cxx11Abi: boolean; cudaCompiled: boolean };
  cudaInfo(): { available: boolean; deviceCount: number };
  setThreads(n: number): void;
  getThreads(): number;
  /** Process-wide decoding counts: steps, rows × steps, steps whose cache went stale, rows and positions recomputed. */
  decodeCounts(): { steps: number; rowSteps: number; staleSteps: number; recomputedRows: number; recomputedPositions: number };
  deviceMemory(device: string): DeviceMemory;
  resetPeakMemory(device: string): void;
  NativeHookedModel: {
    load(dir: string, options: { device: string; dtype: string }): Promise<NativeHookedModel>;
  };
  NativeSecondMoments: NativeSecondMomentsClass;
  NativeConsecutiveEditor: NativeConsecutiveEditorClass;
}

export interface NativeSecondMoments {
  add(batch: number[][]): Promise<number>;
  save(path: string, metadata: Record<string, string>): Promise<void>;
  mean(layer: number): Promise<{ data: Float64Array; shape: number[] }>;
  count(): number;
  layers(): number[];
  dispose(): void;
}

export interface NativeSecondMomentsClass {
  new (model: NativeHookedModel, options: { layers: number[]; dtype: 'float32' | 'float64'; products: 'float32' | 'float64' }): NativeSecondMoments;
  load(path: string, model: NativeHookedModel, options?: { products: 'float32' | 'float64' }): Promise<NativeSecondMoments>;
}

/** A request in token form: contexts[0] is the bare prompt; indices point at the subject's last token. */
export interface NativeEditRequest {
  contexts: number[][];
  subjectLast: number[];
  target: number[];
  klRow: number[];
  klSubjectLast: number;
  /** The retarget rule: earlier edits of the subject whose targets the value keeps (their bare prompt). */
  keep?: { row: number[]; subjectLast: number; target: number[] }[];
}

/**
 * The editor's options as they cross the boundary: lib/edit/options.ts's EditorHyperparameters once resolved,
 * with the value path and C_accu's placement. The addon checks every field itself (INVALID_ARGUMENT).
 */
export interface NativeEditorOptions {
  mode: string;
  layers: number[];
  reusePrefix?: boolean;
  accumulatorOnHost?: boolean;
  [setting: string]: unknown;
}

/** Free and used memory of a device (CPU: the machine's MemAvailable/MemTotal). Bytes; -1 where unknown. */
export interface DeviceMemory {
  free: number;
  total: number;
  /** CUDA: bytes in live tensors and held by PyTorch's caching allocator (cached bytes count as used in `free`). */
  allocated: number;
  reserved: number;
  /** CUDA: the peaks of those since the last resetPeakMemory. */
  peakAllocated: number;
  peakReserved: number;
}

export interface NativeTensor64 {
  data: Float64Array;
  shape: number[];
}

export interface NativeLayerReport {
  layer: number;
  residualBefore: number;
  residualAfter: number;
  alphaBefore: number;
  alphaAfter: number;
  jitter: number;
  keys?: NativeTensor64;
  residual?: NativeTensor64;
  delta?: NativeTensor64;
}

export interface NativeEditReport {
  step: number;
  layers: NativeLayerReport[];
  /** With capture: z (n × d_model) too. */
  values: { firstLoss: number[]; finalLoss: number[]; steps: number[]; z?: NativeTensor64 };
  seconds: { values: number; keys: number; solves: number; alpha: number; total: number };
}

export interface NativeEditorState {
  step: number;
  /** history: the retarget rule's committed keys (F, N), null without it. */
  layers: { layer: number; alpha: number; delta: NativeTensor; cAccu: NativeTensor64 | null; history: NativeTensor64 | null }[];
}

export interface NativeConsecutiveEditor {
  edit(
    requests: NativeEditRequest[],
    options: { capture?: boolean; failAfterLayer?: number },
    onProgress?: (phase: string, done: number) => void,
  ): Promise<NativeEditReport>;
  abort(): void;
  info(): { mode: string; scope: string; layers: number[]; step: number; alphas: number[]; scopeFloors: number[] };
  state(): Promise<NativeEditorState>;
  save(path: string): Promise<number>;
  load(path: string): Promise<number>;
  saveIncrement(keysPath: string, deltaPath: string, fromStep: number): Promise<number>;
  exportMerged(files: { source: string; target: string; merged: { tensor: string; layerIndex: number; transposed: boolean }[] }[]): Promise<number>;
  loadChain(basePath: string, keysPaths: string[], deltaPath: string): Promise<number>;
  holdKeys(afterStep: number | null): Promise<void>;
  checksum(): Promise<string>;
  reset(): Promise<void>;
  dispose(): void;
}

export interface NativeConsecutiveEditorClass {
  create(model: NativeHookedModel, stats: NativeSecondMoments, options: NativeEditorOptions): Promise<NativeConsecutiveEditor>;
}
