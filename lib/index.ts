// comeba's public API.
export { HookedModel } from './HookedModel.js';
export type {
  Device, Dtype, Padding, LoadOptions, ModelInfo, Tensor, Hook, RunOptions, RunResult, GenerateOptions, Generation,
} from './HookedModel.js';
export { Tokenizer } from './Tokenizer.js';
export * from './errors.js';
export { ConsecutiveEditor } from './ConsecutiveEditor.js';
export type { EditorOptions, EditCallOptions, EditProgress, EditReport, LayerReport, StatisticsSource } from './ConsecutiveEditor.js';
export type { EditRequest } from './requests.js';
export { Statistics } from './statistics.js';
export { deviceMemory, editorMemoryPlan, resetPeakMemory } from './memory.js';
export type { DeviceMemory, MemoryPlan } from './memory.js';
export type { CollectOptions, StatisticsProgress, StatisticsProvenance } from './statistics.js';
export { defaultLayers, editModes, scopes } from './options.js';
export type { EditMode, EditorHyperparameters, Scope, ValueOptions } from './options.js';
export { Evaluator, nGramEntropy } from './Evaluator.js';
export type { EvalRecord, EvalResult, EvaluatorOptions, FluencyResult, PerplexityResult, RecordScores, Snapshot } from './Evaluator.js';
export { loadDataset, detectFormat, datasetFormats } from './datasets.js';
export type { DatasetFormat, EditCase, LoadDatasetOptions } from './datasets.js';
export { renderChart } from './chart.js';
export type { ChartSeries, ChartPoint, ChartOptions } from './chart.js';
export { runSweep, sweepMethods } from './sweep.js';
export type { Protocol, SweepEvent, SweepMethod, SweepOptions, SweepSummary, MetricsLine } from './sweep.js';
