// Running a loaded model: batched logits with optional probe hooks, and greedy generation with a KV cache.
// Token lists are validated here, so the architectures can assume well-formed input.
#pragma once

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
struct GenerateOptions {
  int64_t max_new_tokens = 0;
  bool stop_at_eos = true;
  int64_t top_k = 0;   // 0: greedy; else sample among the k most likely tokens
  uint64_t seed = 0;   // for sampling: the same seed gives the same tokens
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

}  // namespace comeba
