// Edit requests in text form → the token form the native editor takes (METHOD.md §2): the prompt under
// each context template, the subject's last token by EasyEdit's rule (tokenise prefix + subject, take its
// length − 1), the target with a leading space, and MEMIT's "{subject} is a" prompt for the KL term.
import { InvalidRequestError } from '../errors.js';
import type { NativeEditRequest } from '../addon/types.js';
import type { Tokenizer } from '../model/Tokenizer.js';
import type { HookedModel } from '../model/HookedModel.js';

export interface EditRequest {
  /** The prompt, with `{}` where the subject goes, or containing the subject verbatim. */
  prompt: string;
  subject: string;
  /** The new object; a leading space is added when missing. */
  target: string;
}

/** MEMIT's context prefixes: generated once from these starts, each with a full stop and the prompt after it. */
const templateStarts = ['The', 'Therefore', 'Because', 'I', 'You'];
const templateLength = 10; // tokens, start included, as MEMIT's generate_fast(max_out_len=10)

/**
 * The context templates: "{}" plus one sampled continuation per start ("<text>. {}"), top-k 5, seeded,
 * so a run can be repeated and resumed exactly (METHOD.md §2, ours).
 */
export async function generateContextTemplates(model: HookedModel, seed = 0): Promise<string[]> {
  const templates = ['{}'];
  for (const [i, start] of templateStarts.entries()) {
    const ids = model.tokenizer.encodePrompt(start);
    const out = await model.generate(ids, { maxNewTokens: Math.max(1, templateLength - ids.length), stopAtEos: false, topK: 5, seed: seed + i });
    const text = model.tokenizer.decode([...ids, ...out.tokens]).replaceAll('{', ' ').replaceAll('}', ' ');
    templates.push(`${text}. {}`);
  }
  return templates;
}

/**
 * `template` with its `{}` replaced by `text`, literally: String.replace with a string would expand `$$`,
 * `$&` and `$'` in the text ("It costs $$5" would be edited as "It costs $5").
 */
export function fillTemplate(template: string, text: string): string {
  return template.replace('{}', () => text);
}

/** Targets are scored and edited as a continuation after a space, as EasyEdit and MEMIT do. */
export function withLeadingSpace(target: string): string {
  return target.startsWith(' ') ? target : ` ${target}`;
}

function promptTemplate(request: EditRequest, index: number): string {
  if (request.prompt.includes('{}')) return request.prompt;
  const at = request.prompt.indexOf(request.subject);
  if (at < 0) throw new InvalidRequestError(index, `the subject ${JSON.stringify(request.subject)} does not occur in the prompt ${JSON.stringify(request.prompt)}`);
  return request.prompt.slice(0, at) + '{}' + request.prompt.slice(at + request.subject.length);
}

/** The row of `prefix + subject + suffix` and the index of the subject's last token in it. */
function subjectRow(tokenizer: Tokenizer, prefix: string, subject: string, suffix: string, index: number): [number[], number] {
  const head = tokenizer.encodePrompt(prefix + subject);
  const row = tokenizer.encodePrompt(prefix + subject + suffix);
  const last = head.length - 1;
  if (last < 0 || last >= row.length || row[last] !== head[last]) {
    throw new InvalidRequestError(index, `the subject's last token was not found after tokenisation of ${JSON.stringify(prefix + subject + suffix)}`);
  }
  return [row, last];
}

function checkRequest(request: unknown, index: number): EditRequest {
  const r = request as Partial<EditRequest> | null;
  for (const key of ['prompt', 'subject', 'target'] as const) {
    if (typeof r?.[key] !== 'string') throw new InvalidRequestError(index, `${key} must be a string`);
  }
  const req = r as EditRequest;
  if (req.subject.trim() === '') throw new InvalidRequestError(index, 'the subject is empty');
  if (req.target.trim() === '') throw new InvalidRequestError(index, 'the target is empty');
  if ((req.prompt.match(/\{\}/g) ?? []).length > 1) throw new InvalidRequestError(index, 'the prompt has more than one {}');
  return req;
}

/**
 * The request in token form. `contextLength` is the model's: a prompt whose longest context plus the target
 * does not fit is refused here with the request's index, before any work starts.
 */
export function prepareRequest(tokenizer: Tokenizer, request: EditRequest, templates: readonly string[], index: number, contextLength: number): NativeEditRequest {
  const template = promptTemplate(checkRequest(request, index), index);
  const contexts: number[][] = [];
  const subjectLast: number[] = [];
  for (const context of templates) {
    const full = fillTemplate(context, template);
    const at = full.indexOf('{}');
    const [row, last] = subjectRow(tokenizer, full.slice(0, at), request.subject, full.slice(at + 2), index);
    contexts.push(row);
    subjectLast.push(last);
  }
  const target = tokenizer.encode(withLeadingSpace(request.target));
  if (target.length === 0) throw new InvalidRequestError(index, 'the target has no tokens');
  const longest = Math.max(...contexts.map((row) => row.length));
  if (longest + target.length > contextLength) {
    throw new InvalidRequestError(index, `the prompt in its longest context (${longest} tokens) and the target (${target.length}) exceed the model's context of ${contextLength} tokens`);
  }
  const [klRow, klSubjectLast] = subjectRow(tokenizer, '', request.subject, ' is a', index);
  return { contexts, subjectLast, target, klRow, klSubjectLast };
}
