// The whole native surface of the addon, as TypeScript sees it. Only lib/ talks to these objects; the public
// classes wrap them with validation, typed errors and disposal.

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
  architecture: 'gpt2' | 'gptj';
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
  forward(batch: number[][], options: { padding: 'left' | 'right'; hooks?: NativeHookSpec[] }): Promise<NativeForwardResult>;
  generate(prompt: number[], options: { maxNewTokens: number; stopAtEos: boolean }): Promise<number[]>;
  dispose(): void;
}

export interface NativeAddon {
  buildInfo(): { torchVersion: string; cxx11Abi: boolean; cudaCompiled: boolean };
  cudaInfo(): { available: boolean; deviceCount: number };
  setThreads(n: number): void;
  getThreads(): number;
  NativeHookedModel: {
    load(dir: string, options: { device: string; dtype: string }): Promise<NativeHookedModel>;
  };
}
