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

  private constructor(inner: HfTokenizer, config: { add_bos_token?: unknown; bos_token?: unknown }) {
    this.#inner = inner;
    this.bos = bosOf(inner, config);
  }

  /** Reads tokenizer.json and tokenizer_config.json from a Hugging Face checkpoint folder. */
  static fromFolder(dir: string): Tokenizer {
    const json = readJson(dir, 'tokenizer.json');
    const config = readJson(dir, 'tokenizer_config.json');
    try {
      return new Tokenizer(new HfTokenizer(json, config), config);
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

  /** Text of `ids`; a leading BOS is left out (it has no text). */
  decode(ids: readonly number[]): string {
    return this.#inner.decode(ids[0] === this.bos ? ids.slice(1) : [...ids], { skip_special_tokens: false });
  }
}

/**
 * The BOS token to prepend: tokenizer_config.json's `add_bos_token` when it says (true: its `bos_token`),
 * else whatever the tokenizer.json post-processor prepends to a plain text (Llama 3 says it only there).
 */
function bosOf(inner: HfTokenizer, config: { add_bos_token?: unknown; bos_token?: unknown }): number | undefined {
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
