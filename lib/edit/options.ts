// Editor options and their defaults, in one place: the hyperparameter table of METHOD.md §7 and the rule
// that picks edit layers for models without a preset.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, InvalidCheckpointError } from '../errors.js';
import { isRegularFile } from '../io/files.js';
import type { ModelInfo } from '../model/types.js';

export type EditMode = 'comeba-hk' | 'comeba-wo-hk' | 'memit';
export const editModes: readonly EditMode[] = ['comeba-hk', 'comeba-wo-hk', 'memit'];

/**
 * Which tokens comeba-hk's validated hooks edit (docs/method.md "Editing scope"). `paper`: eq. 16–19 exactly.
 * `calibrated` (ours): also require ‖ΔW x_t‖ ≥ scopeKappa · ρ, ρ² = tr(ΔW E[kkᵀ] ΔWᵀ) (the mean of ‖ΔW k‖² over
 * the statistics corpus), and keep α ≥ alphaFloor. `carried` (ours): the paper's test, and a token edited at one
 * layer is edited at every edited layer above it in the same forward (the test misses rephrased prompts' subject in
 * the upper layers more often than in the lowest). `studentized` (ours): eq. 16–19 with each token's z-score taken
 * against the sequence's other tokens (the paper's z cannot exceed (n−1)/√n, below α = 2.2 for prompts of ≤ 6 tokens).
 */
export type Scope = 'paper' | 'calibrated' | 'carried' | 'studentized';
export const scopes: readonly Scope[] = ['paper', 'calibrated', 'carried', 'studentized'];

/**
 * What a new edit does to the preservation constraints of earlier edits whose keys it meets (docs/method.md "Re-edits").
 * `none`: the paper's (every earlier key keeps its output). `retarget` (ours): an earlier key whose whitened cosine
 * c with a new key reaches reeditThreshold τ moves with it, by w = (c − τ)/(1 − τ) of the new key's residual.
 */
export type ReEdit = 'none' | 'retarget';
export const reedits: readonly ReEdit[] = ['none', 'retarget'];

export interface ValueOptions {
  /** Adam steps of the value optimisation (MEMIT's v_num_grad_steps). */
  vSteps: number;
  vLr: number;
  vWeightDecay: number;
  klFactor: number;
  clampNormFactor: number;
  /** A request stops optimising once its loss is below this. */
  earlyStopLoss: number;
}

export interface EditorHyperparameters extends ValueOptions {
  mode: EditMode;
  /** Edited layers, increasing; z lives at the output of the last one. */
  layers: number[];
  /** Weight of the pre-trained associations: C_accu starts at λ·E[kkᵀ]. */
  lambda: number;
  /** Initial threshold of the validated hooks' z-score test. */
  alphaZ: number;
  scope: Scope;
  /** Calibrated scope: a token is edited only where ‖ΔW x‖ ≥ scopeKappa · ρ. */
  scopeKappa: number;
  /** Calibrated scope: eq. 19 never lowers α below this. */
  alphaFloor: number;
  /** Storage of C_accu; solves always run in float64. */
  accumulatorDtype: 'float32' | 'float64';
  reedit: ReEdit;
  /** The retarget rule's τ in [0, 1): earlier keys at a whitened cosine below it are left alone. */
  reeditThreshold: number;
}

// Checked by the compiler to name every field of EditorHyperparameters once.
const hyperparameterFields: Record<keyof EditorHyperparameters, true> = {
  mode: true, layers: true, lambda: true, alphaZ: true, scope: true, scopeKappa: true, alphaFloor: true, accumulatorDtype: true,
  reedit: true, reeditThreshold: true, vSteps: true, vLr: true, vWeightDecay: true, klFactor: true, clampNormFactor: true, earlyStopLoss: true,
};
/** Every field of EditorHyperparameters: a saved editor must hold them all. */
export const editorHyperparameterKeys = Object.keys(hyperparameterFields) as (keyof EditorHyperparameters)[];

export const valueDefaults: Readonly<ValueOptions> = {
  vSteps: 20, vLr: 0.5, vWeightDecay: 0.5, klFactor: 0.0625, clampNormFactor: 0.75, earlyStopLoss: 5e-2,
};

/** The value optimisation's command-line flags (comeba sweep), what each sets, and which values it takes. */
export const valueFlags: Readonly<Record<keyof ValueOptions, { flag: string; doc: string; integer?: true; zero?: true }>> = {
  vSteps: { flag: 'v-steps', doc: 'Adam steps optimising each value', integer: true },
  vLr: { flag: 'v-lr', doc: 'their learning rate' },
  vWeightDecay: { flag: 'v-weight-decay', doc: 'weight decay of δ', zero: true },
  klFactor: { flag: 'kl-factor', doc: 'weight of the KL term on "S is a"', zero: true },
  clampNormFactor: { flag: 'clamp-norm-factor', doc: '‖δ‖ at most this × ‖z‖' },
  earlyStopLoss: { flag: 'early-stop-loss', doc: 'stop a request below this loss', zero: true },
};

/**
 * The calibrated scope's defaults (docs/method.md "Editing scope"). κ = 3: on the testbed's corpus 99.9 % of tokens respond
 * below 3ρ after 1,000 edits (2.8–3.1 ρ per layer). α_floor = 2: an edited token stands 2 std above its sequence's
 * mean (eq. 19 lowered α to 1.0–1.5 within 20 batches on the short prompts of the previous testbed).
 */
export const calibratedScope = { scopeKappa: 3, alphaFloor: 2 } as const;

/**
 * The re-edit rule's defaults: the paper's (none), and τ = 0.5 for retarget. On the testbed one person's keys in
 * other prompts sit at whitened cosine 0.89–0.99 and other people's at 0.00 ± 0.1 (99.9 % below 0.35, none above
 * 0.58): τ 0.5 moves a re-edited subject's earlier keys by 0.8–1 of the new residual and nearly no other key.
 * Editor states saved before the rule existed load with these.
 */
export const reeditDefaults = { reedit: 'none', reeditThreshold: 0.5 } as const satisfies Pick<EditorHyperparameters, 'reedit' | 'reeditThreshold'>;

/** The paper's λ per mode for consecutive editing, on its reference model GPT2-XL (METHOD.md §7); scaled by lambdaFor. */
export const lambdaByMode: Readonly<Record<EditMode, number>> = { 'comeba-hk': 15000, 'comeba-wo-hk': 15000, memit: 20000 };
/** The validated hooks' initial α (the paper's 2.2). */
export const defaultAlphaZ = 2.2;
/** The paper's λ for single-round COMEBA-HK (METHOD.md §7), on GPT2-XL; a sweep uses it, scaled, in that protocol. */
export const singleRoundLambda: Partial<Record<EditMode, number>> = { 'comeba-hk': 5000 };

interface Reference {
  /** The model the family's settings were published for, and its shape. */
  name: string; nLayer: number; dModel: number; dFf: number;
  layers: number[]; vSteps: number;
  /** MEMIT's λ there; COMEBA's is the paper's (lambdaByMode) on every reference. */
  memitLambda: number;
  values?: Partial<ValueOptions>;
}

/**
 * One reference model per family, the one table of published settings: the paper's GPT2-XL and GPT-J (METHOD.md
 * §7), and MEMIT's for Llama-3-8B (AlphaEdit's hparams/MEMIT/Llama3-8B.json) and Qwen2.5-7B (EasyEdit's
 * hparams/MEMIT/qwen2.5-7b.yaml). A reference model gets its settings as they are (its preset); another size of
 * the family keeps the edited layers' relative depth (defaultLayers) and scales λ by d_ff (lambdaFor).
 */
const references: Record<string, Reference> = {
  gpt2: { name: 'GPT2-XL', nLayer: 48, dModel: 1600, dFf: 6400, layers: [13, 14, 15, 16, 17], vSteps: 20, memitLambda: 20000 },
  gptj: { name: 'GPT-J', nLayer: 28, dModel: 4096, dFf: 16384, layers: [3, 4, 5, 6, 7, 8], vSteps: 25, memitLambda: 15000 },
  llama: { name: 'Llama-3-8B', nLayer: 32, dModel: 4096, dFf: 14336, layers: [4, 5, 6, 7, 8], vSteps: 25, memitLambda: 15000, values: { vLr: 0.1 } },
  qwen2: {
    name: 'Qwen2.5-7B', nLayer: 28, dModel: 3584, dFf: 18944, layers: [4, 5, 6, 7, 8], vSteps: 25, memitLambda: 15000,
    values: { vWeightDecay: 1e-3, clampNormFactor: 4 },
  },
};
/** Families without a published setting of their own borrow the nearest one's (Mistral: Llama's; Qwen3: Qwen2.5's). */
const referenceOf = (architecture: string): { reference: Reference; own: boolean } => {
  const own = references[architecture];
  if (own) return { reference: own, own: true };
  return { reference: references[{ mistral: 'llama', qwen3: 'qwen2' }[architecture] ?? 'gpt2'], own: false };
};

function presetFor(info: Pick<ModelInfo, 'architecture' | 'nLayer' | 'dModel'>): Reference | undefined {
  const { reference, own } = referenceOf(info.architecture);
  return own && reference.nLayer === info.nLayer && reference.dModel === info.dModel ? reference : undefined;
}

/**
 * Edit layers for a model without a preset: its family's reference layers (GPT2-XL 13–17 of 48, GPT-J 3–8 of 28,
 * Llama-3-8B 4–8 of 32, Qwen2.5-7B 4–8 of 28) scaled to the same relative depth, keeping at least two layers.
 */
export function defaultLayers(info: Pick<ModelInfo, 'architecture' | 'nLayer' | 'dModel'>): number[] {
  const preset = presetFor(info);
  if (preset) return preset.layers;
  const { layers, nLayer: depth } = referenceOf(info.architecture).reference;
  const [first, last] = [layers[0], layers.at(-1)!];
  const start = Math.round((first / depth) * info.nLayer);
  const end = Math.max(start + 1, Math.round((last / depth) * info.nLayer));
  return Array.from({ length: Math.min(end, info.nLayer - 1) - start + 1 }, (_, i) => start + i);
}

/**
 * λ carried from the reference model to this one (docs/method.md "λ for any model"). How far an edit moves a key k is set
 * by kᵀ(λ·E[kkᵀ])⁻¹k: one key's share of the update is s/(1+s) with s that number. For keys drawn like the
 * statistics' own, E[kᵀE[kkᵀ]⁻¹k] = tr(I) = d_ff, so s ≈ d_ff/λ: the paper's λ = 15,000 on GPT2-XL's 6,400-dim
 * keys (s ≈ 0.43) is 38 times stiffer on a 1,024-dim model than the paper meant. Holding d_ff/λ fixed gives
 * λ = λ_reference · d_ff / d_ff_reference, the identity on every reference model (the paper's settings stay as
 * they are). `referenceLambda` is the λ of the protocol on the reference (default: the mode's consecutive λ).
 */
export function lambdaFor(info: Pick<ModelInfo, 'architecture' | 'dFf'>, mode: EditMode, referenceLambda?: number): { lambda: number; reference: { name: string; dFf: number; lambda: number } } {
  const { reference } = referenceOf(info.architecture);
  const lambda = referenceLambda ?? (mode === 'memit' ? reference.memitLambda : lambdaByMode[mode]);
  return { lambda: (lambda * info.dFf) / reference.dFf, reference: { name: reference.name, dFf: reference.dFf, lambda } };
}

/**
 * Editor defaults a checkpoint may carry in `comeba.json` beside its config.json (the embedded testbed does):
 * `{ "layers": [...], "lambda": { "comeba-hk": …, "memit": … }, "alphaZ": …, "values": { "vSteps": …, … } }`. They
 * override the presets and the scaling rule; explicit options override them.
 */
export interface CheckpointDefaults {
  layers?: number[];
  lambda?: Partial<Record<EditMode, number>>;
  alphaZ?: number;
  /** Value-optimisation settings for this checkpoint (a small model's z may need more steps than GPT2-XL's). */
  values?: Partial<ValueOptions>;
}

export function readCheckpointDefaults(dir: string): CheckpointDefaults {
  const path = join(dir, 'comeba.json');
  if (!existsSync(path)) return {};
  if (!isRegularFile(path)) throw new InvalidArgumentError(`${path} is not a regular file`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`${path} is not valid JSON`, { cause: err });
  }
  return checkDefaults(parsed, path);
}

// Each field as CheckpointDefaults says, or one line naming it: comeba.json is the user's file.
function checkDefaults(parsed: unknown, path: string): CheckpointDefaults {
  const bad = (what: string) => new InvalidCheckpointError(`${path}: ${what}`);
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const positive = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;
  if (!isObject(parsed)) throw bad('must be a JSON object such as {"layers": [1, 2], "lambda": {"comeba-hk": 15000}}');
  const { layers, lambda, alphaZ, values } = parsed;
  if (layers !== undefined && !(Array.isArray(layers) && layers.length > 0 && layers.every((l) => Number.isSafeInteger(l) && l >= 0))) {
    throw bad('"layers" must be a non-empty list of layer indices');
  }
  if (lambda !== undefined && !(isObject(lambda) && Object.entries(lambda).every(([m, l]) => (editModes as readonly string[]).includes(m) && positive(l)))) {
    throw bad(`"lambda" must map modes (${editModes.join(', ')}) to positive numbers`);
  }
  if (alphaZ !== undefined && !positive(alphaZ)) throw bad('"alphaZ" must be a positive number');
  if (values !== undefined && !(isObject(values) && Object.entries(values).every(([k, v]) => Object.hasOwn(valueDefaults, k) && typeof v === 'number' && Number.isFinite(v) && v >= 0))) {
    throw bad(`"values" must map value options (${Object.keys(valueDefaults).join(', ')}) to numbers ≥ 0`);
  }
  return parsed as CheckpointDefaults;
}

/**
 * Full hyperparameters, the one place their precedence is decided: `given`, then the checkpoint's comeba.json
 * (`defaults`), then a protocol's own λ (`protocolLambda`: single-round COMEBA-HK's), then the preset or the
 * scaling rule and the built-in tables above.
 */
export function resolveHyperparameters(
  info: ModelInfo, given: Partial<EditorHyperparameters>, defaults: CheckpointDefaults = {}, protocolLambda?: number,
): EditorHyperparameters {
  const mode = given.mode ?? 'comeba-hk';
  if (!editModes.includes(mode)) {
    throw new InvalidArgumentError(`mode must be one of ${editModes.join(', ')}, not '${String(mode)}'`);
  }
  const preset = presetFor(info);
  const lambda = defaults.lambda?.[mode] ?? lambdaFor(info, mode, protocolLambda).lambda;
  const resolved: EditorHyperparameters = {
    ...valueDefaults,
    vSteps: preset?.vSteps ?? valueDefaults.vSteps,
    ...preset?.values,
    ...pickValueOptions(defaults.values),
    mode,
    layers: defaults.layers ?? defaultLayers(info),
    lambda,
    alphaZ: defaults.alphaZ ?? defaultAlphaZ,
    scope: 'paper',
    ...(given.scope === 'calibrated' ? calibratedScope : { scopeKappa: 0, alphaFloor: 0 }),
    accumulatorDtype: info.dFf > 8192 ? 'float32' : 'float64',
    ...reeditDefaults,
    ...stripUndefined(given),
  };
  const layers = resolved.layers;
  if (!Array.isArray(layers) || layers.length === 0 || layers.some((l, i) => !Number.isInteger(l) || l < 0 || l >= info.nLayer || (i > 0 && l <= layers[i - 1]))) {
    throw new InvalidArgumentError(`layers must be strictly increasing integers in [0, ${info.nLayer}), not ${JSON.stringify(layers)}`);
  }
  for (const key of ['lambda', 'alphaZ', 'vLr', 'clampNormFactor'] as const) {
    if (!(Number.isFinite(resolved[key]) && resolved[key] > 0)) throw new InvalidArgumentError(`${key} must be a positive number`);
  }
  if (!Number.isInteger(resolved.vSteps) || resolved.vSteps < 1) throw new InvalidArgumentError('vSteps must be a positive integer');
  if (!scopes.includes(resolved.scope)) throw new InvalidArgumentError(`scope must be one of ${scopes.join(', ')}, not '${String(resolved.scope)}'`);
  if (resolved.scope !== 'paper' && mode !== 'comeba-hk') throw new InvalidArgumentError(`the ${resolved.scope} scope needs comeba-hk's validated hooks, not mode '${mode}'`);
  if (!reedits.includes(resolved.reedit)) throw new InvalidArgumentError(`reedit must be one of ${reedits.join(', ')}, not '${String(resolved.reedit)}'`);
  if (resolved.reedit === 'retarget' && mode === 'memit') throw new InvalidArgumentError("the retarget rule acts on C_accu's earlier keys: use it with comeba-hk or comeba-wo-hk, not memit");
  if (!(Number.isFinite(resolved.reeditThreshold) && resolved.reeditThreshold >= 0 && resolved.reeditThreshold < 1)) {
    throw new InvalidArgumentError('reeditThreshold must be a number in [0, 1)');
  }
  if (!(Number.isFinite(resolved.scopeKappa) && resolved.scopeKappa >= 0)) throw new InvalidArgumentError('scopeKappa must be a number ≥ 0');
  if (!(Number.isFinite(resolved.alphaFloor) && resolved.alphaFloor >= 0 && resolved.alphaFloor <= resolved.alphaZ)) {
    throw new InvalidArgumentError('alphaFloor must be a number in [0, alphaZ]');
  }
  return resolved;
}

function pickValueOptions(values: Partial<ValueOptions> = {}): Partial<ValueOptions> {
  return Object.fromEntries(Object.entries(values).filter(([k]) => k in valueDefaults)) as Partial<ValueOptions>;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
