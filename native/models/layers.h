// Pieces shared by the architectures: layer norm, activations, attention with a padding-aware causal mask,
// and the KV cache bookkeeping. Small free functions, each one libtorch op or a few.
#pragma once

#include <torch/torch.h>

#include <string>

#include "models/causal_lm.h"

namespace comeba {

struct LayerNorm {
  torch::Tensor weight, bias;
  double eps = 1e-5;
  torch::Tensor operator()(const torch::Tensor& x) const {
    return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps);
  }
};

// RMSNorm as Llama computes it: the statistics in float32, the weight applied in the input's dtype.
struct RmsNorm {
  torch::Tensor weight;
  double eps = 1e-6;
  torch::Tensor operator()(const torch::Tensor& x) const {
    auto x32 = x.to(torch::kFloat32);
    return weight * (x32 * torch::rsqrt(x32.pow(2).mean(-1, true) + eps)).to(x.scalar_type());
  }
};

enum class Activation { GeluTanh, GeluErf, Relu };

// config.json's activation_function; an unknown one is an unsupported architecture.
Activation parse_activation(const std::string& name, const std::string& dir);

inline torch::Tensor activate(const torch::Tensor& x, Activation act) {
  switch (act) {
    case Activation::GeluTanh: return torch::gelu(x, "tanh");  // HF "gelu_new"
    case Activation::GeluErf: return torch::gelu(x);
    case Activation::Relu: return torch::relu(x);
  }
  return x;
}

// (B, T, C) → (B, H, T, D)
inline torch::Tensor split_heads(const torch::Tensor& x, int64_t n_head) {
  return x.view({x.size(0), x.size(1), n_head, x.size(2) / n_head}).transpose(1, 2);
}

// (B, H, T, D) → (B, T, C)
inline torch::Tensor merge_heads(const torch::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

// Which keys each new token may attend to: earlier-or-same positions that are real tokens. A padding
// query may always see itself, so no softmax row is empty (an all-masked row would put NaN into V).
// Returns (B, 1, T, S) bool.
torch::Tensor attention_mask(const TokenBatch& batch, const KvCache* cache);

// Appends this layer's new keys/values to the cache and returns the full (B, H, S, D) pair.
std::pair<torch::Tensor, torch::Tensor> cache_kv(KvCache* cache, int64_t layer, torch::Tensor k, torch::Tensor v);

// After all layers ran: records which new positions are real and where each row continues.
void commit_cache(KvCache* cache, const TokenBatch& batch);

}  // namespace comeba
