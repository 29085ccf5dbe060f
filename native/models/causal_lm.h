// What every architecture implements: a causal LM forward over a padded token batch, with hook calls at the
// edited MLP projection and at each block output, and an optional KV cache for incremental decoding.
//
// Dimension letters used in shape comments across native/models:
//   B batch, T new tokens this call, S all key positions (cache + new), C d_model, F d_ff,
//   H heads, D head size, V vocabulary.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "hooks/hooks.h"
#include "io/json.h"

namespace comeba {

// A right- or left-padded batch of token ids. Positions count real tokens only, so the logits of a real
// token do not depend on how its row was padded.
struct TokenBatch {
  torch::Tensor ids;        // (B, T) int64
  torch::Tensor real;       // (B, T) bool, false at padding
  torch::Tensor positions;  // (B, T) int64
  std::vector<int64_t> lengths;  // real tokens per row
  std::vector<int64_t> offsets;  // index of each row's first real token (0 for right padding)

  static TokenBatch pack(const std::vector<std::vector<int64_t>>& rows, bool left_pad, int64_t pad_id,
                         torch::Device device);
};

// Keys and values of earlier positions, for generating token by token.
struct KvCache {
  std::vector<torch::Tensor> keys;    // per layer (B, H, S, D)
  std::vector<torch::Tensor> values;  // per layer (B, H, S, D)
  torch::Tensor real;                 // (B, S) bool: which cached positions are real tokens
  torch::Tensor next_position;        // (B) int64: position id of each row's next token

  int64_t length() const { return real.defined() ? real.size(1) : 0; }
};

struct ModelInfo {
  std::string architecture;  // config.json's model_type: gpt2, gptj, llama, mistral, qwen2, qwen3
  int64_t n_layer = 0, d_model = 0, d_ff = 0, n_head = 0, vocab_size = 0, n_ctx = 0;
  int64_t eos_token_id = -1, bos_token_id = -1;
  std::string edited_module;  // HF name pattern of the edited projection, "{}" for the layer
};

// config.json's names for the sizes, which differ between model families.
struct SizeKeys {
  const char *n_layer, *d_model, *n_head, *n_ctx, *d_ff;
  bool head_size_from_d_model;  // d_model / n_head (else a head_dim of its own may be given)
};
inline constexpr SizeKeys kGptSizes{"n_layer", "n_embd", "n_head", "n_positions", "n_inner", true};
inline constexpr SizeKeys kLlamaSizes{"num_hidden_layers", "hidden_size", "num_attention_heads", "max_position_embeddings",
                                      "intermediate_size", false};

// The sizes (d_ff defaults to 4·d_model), vocab_size and eos/bos ids, checked for consistency.
ModelInfo read_model_info(const Json& config, const std::string& dir, const std::string& architecture,
                          const std::string& edited_module, const SizeKeys& keys = kGptSizes);

class CausalLM {
 public:
  virtual ~CausalLM() = default;

  virtual const ModelInfo& info() const = 0;
  virtual torch::Device device() const = 0;
  virtual torch::Dtype dtype() const = 0;

  // The residual stream entering block 0 (B, T, C).
  virtual torch::Tensor embed(const TokenBatch& batch) const = 0;

  // Blocks first_layer … n_layer − 1 on the residual stream `h` entering first_layer: the final residual
  // stream (B, T, C), or an undefined tensor when hooks->last_layer() stopped the pass early. `hooks` may
  // be null; `cache` (may be null, only with first_layer 0) is read and extended.
  virtual torch::Tensor blocks_from(int64_t first_layer, torch::Tensor h, const TokenBatch& batch, ForwardHooks* hooks,
                                    KvCache* cache) const = 0;

  // Final norm and LM head: (…, C) → logits (…, V) in the model's dtype.
  virtual torch::Tensor head(const torch::Tensor& h) const = 0;

  // The final residual stream (B, T, C) of the whole model; callers that read only some positions run
  // head() on those alone.
  torch::Tensor hidden(const TokenBatch& batch, ForwardHooks* hooks, KvCache* cache) const {
    return blocks_from(0, embed(batch), batch, hooks, cache);
  }

  // Logits (B, T, V), or an undefined tensor when hooks->last_layer() stopped the pass early.
  torch::Tensor forward(const TokenBatch& batch, ForwardHooks* hooks, KvCache* cache) const {
    auto h = hidden(batch, hooks, cache);
    return h.defined() ? head(h) : h;
  }

  // The edited MLP projection of `layer` (GPT-2 mlp.c_proj, GPT-J mlp.fc_out).
  virtual const Linear& edited_module(int64_t layer) const = 0;

  // Resolves an HF hook point name ("transformer.h.3.mlp.c_proj", "transformer.h.3") or throws.
  HookPoint parse_hook_point(const std::string& name) const;
};

// Builds the model that config.json's model_type names, from the checkpoint folder `dir`.
std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, torch::Device device, torch::Dtype dtype);

}  // namespace comeba
