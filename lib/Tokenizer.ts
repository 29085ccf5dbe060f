// The model's tokenizer, from the checkpoint folder's tokenizer.json + tokenizer_config.json, through
// @huggingface/tokenizers. Special tokens are never added: editing and evaluation place every token themselves.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { InvalidCheckpointError } from './errors.js';
import { isRegularFile } from './files.js';

export class Tokenizer {
  readonly #inner: HfTokenizer;

  private constructor(inner: HfTokenizer) {
    this.#inner = inner;
  }

  /** Reads tokenizer.json and tokenizer_config.json from a Hugging Face checkpoint folder. */
  static fromFolder(dir: string): Tokenizer {
    const json = readJson(dir, 'tokenizer.json');
    const config = readJson(dir, 'tokenizer_config.json');
    try {
      return new Tokenizer(new HfTokenizer(json, config));
    } catch (err) {
      throw new InvalidCheckpointError(`invalid checkpoint ${dir}: cannot build the tokenizer (${(err as Error).message})`, { cause: err });
    }
  }

  encode(text: string): number[] {
    return this.#inner.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[]): string {
    return this.#inner.decode([...ids], { skip_special_tokens: false });
  }
}

function readJson(dir: string, name: string): object {
  const path = join(dir, name);
  if (!existsSync(path)) {
    throw new InvalidCheckpointError(`invalid checkpoint ${dir}: missing ${name} (the tokenizer needs tokenizer.json and tokenizer_config.json)`);
  }
  if (!isRegularFile(path)) throw new InvalidCheckpointError(`invalid checkpoint ${dir}: ${name} is not a regular file`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as object;
  } catch (err) {
    throw new InvalidCheckpointError(`invalid checkpoint ${dir}: ${name} is not valid JSON`, { cause: err });
  }
}
