// Running a loaded model: batched logits with optional probe hooks, and greedy generation with a KV cache.
// Token lists are validated here, so the architectures can assume well-formed input.
#pragma once

#include <functional>
#include <vector>

#include "hooks/probe_hooks.h"
#include "models/causal_lm.h"

namespace comeba {

using TokenRows = std::vector<std::vector<int64_t>>;

struct ForwardResult {
  torch::Tensor logits;                // (B, T, V) float32 on the CPU, padded positions unspecified; (B, V) with last_only
  std::vector<torch::Tensor> records;  // one per probe spec (undefined where it records nothing)
};

// Throws InvalidArgument for an empty batch, an empty row, an id outside the vocabulary, or a row (plus
// `extra` tokens still to come) longer than the model's context.
void validate_tokens(const CausalLM& model, const TokenRows& rows, int64_t extra = 0);

// `base` (may be null) are hooks every forward of this model goes through, e.g. an attached editor's.
// `last_only`: the LM head runs on each row's last real token alone (next-token scores, and no (B, T, V) copy).
ForwardResult run_forward(const CausalLM& model, const TokenRows& rows, bool left_pad, std::vector<ProbeSpec> probes,
                          ForwardHooks* base, bool last_only = false);

// Defaults live in lib/model/types.ts (generateDefaults); the binding requires maxNewTokens.
// Greedy unless temperature > 0, top_k > 0 or top_p < 1: then sampled from softmax(logits / temperature)
// (temperature 1 where 0), restricted to the k most likely tokens and to the smallest set whose probability
// reaches top_p, as transformers' TopK and TopP warpers do.
struct GenerateOptions {
  int64_t max_new_tokens = 0;
  bool stop_at_eos = true;
  int64_t top_k = 0;        // 0: no top-k restriction
  double top_p = 1;         // in (0, 1]; 1: no nucleus restriction
  double temperature = 0;   // ≥ 0
  uint64_t seed = 0;        // for sampling: the same seed gives the same tokens
  // Called with each new token once it is part of the sequence; false stops the generation there (a stop
  // string, an abort, a consumer that went away).
  std::function<bool(int64_t)> on_token;
};

// Decoding one token per step through the KV cache. `hooks` (may be null) see every step.
std::vector<int64_t> generate(const CausalLM& model, const std::vector<int64_t>& prompt, const GenerateOptions& options,
                              ForwardHooks* hooks);

// Greedy continuations of many prompts at once, `max_new_tokens[r]` tokens for row r (no stop at EOS): rows
// of one length form a batch, left-padded so that every row's next token is the last column, with one KV
// cache. Each row's tokens are those generate() gives it alone (padding is masked; hooks take z-scores over
// each row's real tokens).
TokenRows generate_greedy(const CausalLM& model, const TokenRows& prompts, const std::vector<int64_t>& max_new_tokens,
                          ForwardHooks* hooks);

// Process-wide counts of the decoding work: steps, steps whose cache went stale, and the rows and token
// positions recomputed for them (what the benchmarks and tests read to see how much a flip costs).
struct DecodeCounts {
  int64_t steps = 0, stale_steps = 0, recomputed_rows = 0, recomputed_positions = 0, row_steps = 0;
};
DecodeCounts decode_counts();

}  // namespace comeba
