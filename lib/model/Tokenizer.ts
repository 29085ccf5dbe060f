// The model's tokenizer, from the checkpoint folder's tokenizer.json + tokenizer_config.json, through
// @huggingface/tokenizers. Editing and evaluation place every token themselves: a prompt starts with the
// BOS token where the model's tokenizer prepends one (Llama, Mistral), a continuation (a target) never does.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { InvalidCheckpointError } from '../errors.js';
import { isRegularFile } from '../io/files.js';

export class Tokenizer {
  /** The token that starts every prompt (Llama's `<s>`), or undefined (GPT-2, Qwen). */
  readonly bos: number | undefined;
  readonly #inner: HfTokenizer;
  readonly #cleanUp: boolean;

  private constructor(inner: HfTokenizer, json: Record<string, unknown>, config: Record<string, unknown>) {
    this.#inner = inner;
    this.bos = bosOf(inner, config);
    this.#cleanUp = cleansUp(json, config);
  }

  /**
   * Reads tokenizer.json and tokenizer_config.json from a Hugging Face checkpoint folder; `config` overrides
   * settings of tokenizer_config.json, as keyword arguments of transformers' from_pretrained do.
   */
  static fromFolder(dir: string, config: Record<string, unknown> = {}): Tokenizer {
    const json = readJson(dir, 'tokenizer.json');
    const settings = { ...readJson(dir, 'tokenizer_config.json'), ...config };
    try {
      return new Tokenizer(new HfTokenizer(json, settings), json, settings);
    } catch (err) {
      throw new InvalidCheckpointError(`invalid checkpoint ${dir}: cannot build the tokenizer (${(err as Error).message})`, { cause: err });
    }
  }

  /** The tokens of `text` as a continuation: no special token added. */
  encode(text: string): number[] {
    return this.#inner.encode(text, { add_special_tokens: false }).ids;
  }

  /** The tokens of `text` as the start of a sequence: BOS first where the model's tokenizer prepends it. */
  encodePrompt(text: string): number[] {
    const ids = this.encode(text);
    return this.bos === undefined ? ids : [this.bos, ...ids];
  }

  /** Text of `ids` as transformers decodes them for this checkpoint; a leading BOS is left out (it has no text). */
  decode(ids: readonly number[]): string {
    return this.#inner.decode(ids[0] === this.bos ? ids.slice(1) : [...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: this.#cleanUp });
  }
}

/**
 * Whether decode removes the space before punctuation and contractions, as transformers (5.x) decides: only where
 * tokenizer_config.json asks (its default is no), and never for a BPE vocabulary, where it would corrupt text
 * (" ," is a real token sequence), unless the config insists. @huggingface/tokenizers cleans up by default.
 */
function cleansUp(json: Record<string, unknown>, config: Record<string, unknown>): boolean {
  if (config.clean_up_tokenization_spaces !== true) return false;
  const bpe = (json.model as { type?: unknown } | undefined)?.type === 'BPE';
  return !bpe || config.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output === true;
}

/**
 * The BOS token to prepend: tokenizer_config.json's `add_bos_token` when it says (true: its `bos_token`),
 * else whatever the tokenizer.json post-processor prepends to a plain text (Llama 3 says it only there).
 */
function bosOf(inner: HfTokenizer, config: Record<string, unknown>): number | undefined {
  if (config.add_bos_token === false) return undefined;
  if (config.add_bos_token === true) {
    const token = typeof config.bos_token === 'string' ? config.bos_token : (config.bos_token as { content?: unknown } | undefined)?.content;
    const id = typeof token === 'string' ? inner.token_to_id(token) : undefined;
    if (id !== undefined && id !== null) return id;
  }
  const plain: number[] = inner.encode('a', { add_special_tokens: false }).ids;
  const full: number[] = inner.encode('a', { add_special_tokens: true }).ids;
  return full.length === plain.length + 1 && plain.every((id, i) => full[i + 1] === id) ? full[0] : undefined;
}

function readJson(dir: string, name: string): Record<string, unknown> {
  const path = join(dir, name);
  if (!existsSync(path)) {
    throw new InvalidCheckpointError(`invalid checkpoint ${dir}: missing ${name} (the tokenizer needs tokenizer.json and tokenizer_config.json)`);
  }
  if (!isRegularFile(path)) throw new InvalidCheckpointError(`invalid checkpoint ${dir}: ${name} is not a regular file`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new InvalidCheckpointError(`invalid checkpoint ${dir}: ${name} is not valid JSON`, { cause: err });
  }
}
