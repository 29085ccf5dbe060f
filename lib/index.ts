// comeba's public API.
export { HookedModel } from './model/HookedModel.js';
export { generateDefaults } from './model/types.js';
export type {
  Device, Dtype, Padding, LoadOptions, ModelInfo, Tensor, Hook, RunOptions, RunResult, GenerateOptions, GeneratedPiece, Generation, Decisions,
} from './model/HookedModel.js';
export { Tokenizer } from './model/Tokenizer.js';
export * from './errors.js';
export { ConsecutiveEditor } from './edit/ConsecutiveEditor.js';
export type { EditorOptions, EditCallOptions, EditProgress, EditReport, LayerReport, ExportReport, SaveReport, StatisticsSource } from './edit/ConsecutiveEditor.js';
export { unrealisedBelow } from './edit/ConsecutiveEditor.js';
export type { EditRequest } from './edit/requests.js';
export { Statistics } from './statistics/Statistics.js';
export { deviceMemory, editorMemoryPlan, resetPeakMemory } from './edit/memory.js';
export type { DeviceMemory, MemoryPlan } from './edit/memory.js';
export type { CollectOptions, StatisticsProgress, StatisticsProvenance } from './statistics/Statistics.js';
export { defaultLayers, editModes, lambdaFor, reedits, scopes } from './edit/options.js';
export type { EditMode, EditorHyperparameters, ReEdit, Scope, ValueOptions } from './edit/options.js';
export { Evaluator, nGramEntropy, summarise } from './eval/Evaluator.js';
export type { EvalRecord, EvalResult, EvaluatorOptions, FluencyResult, PerplexityResult, RecordScores, Snapshot } from './eval/Evaluator.js';
export { loadDataset, detectFormat, datasetFormats } from './eval/datasets.js';
export type { DatasetFormat, EditCase, LoadDatasetOptions } from './eval/datasets.js';
export { renderChart } from './sweep/chart.js';
export type { ChartSeries, ChartPoint, ChartOptions } from './sweep/chart.js';
export { runSweep, sweepMethods } from './sweep/sweep.js';
export type { Protocol, SweepEvent, SweepMethod, SweepOptions, SweepSummary, MetricsLine } from './sweep/sweep.js';
