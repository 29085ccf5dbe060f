// GPT-2 (gpt2 … gpt2-xl), read top to bottom: token + position embeddings, n_layer pre-LN blocks
// (attention, then MLP, each added to the residual stream), final layer norm, head tied to wte.
// Weights keep HF's names and Conv1D layout ([in, out], y = xW + b).
#include <cmath>

#include "common/error.h"
#include "io/checkpoint.h"
#include "models/layers.h"
#include "models/registry.h"

namespace comeba {
namespace {

struct Gpt2Block {
  LayerNorm ln_1, ln_2;
  Linear c_attn;     // C → 3C
  Linear attn_proj;  // C → C   (attn.c_proj)
  Linear c_fc;       // C → F
  Linear c_proj;     // F → C   (mlp.c_proj, the edited module)
};

class Gpt2 final : public CausalLM {
 public:
  Gpt2(const std::string& dir, const Json& config, torch::Device device, torch::Dtype dtype)
      : info_(read_model_info(config, dir, "gpt2", "transformer.h.{}.mlp.c_proj")), device_(device), dtype_(dtype) {
    act_ = parse_activation(config_string_or(config, "activation_function", "gelu_new"), dir);
    const double eps = config_double_or(config, "layer_norm_epsilon", 1e-5);
    const Json* inverse_idx = config.find("scale_attn_by_inverse_layer_idx");
    scale_by_layer_ = inverse_idx && inverse_idx->is_bool() && inverse_idx->as_bool();

    CheckpointWeights w(dir, device, dtype);
    const int64_t C = info_.d_model, F = info_.d_ff;
    wte_ = w.take("transformer.wte.weight", {info_.vocab_size, C});
    wpe_ = w.take("transformer.wpe.weight", {info_.n_ctx, C});
    auto norm = [&](const std::string& p) {
      return LayerNorm{w.take(p + ".weight", {C}), w.take(p + ".bias", {C}), eps};
    };
    auto conv1d = [&](const std::string& p, int64_t in, int64_t out) {
      return Linear{w.take(p + ".weight", {in, out}), w.take(p + ".bias", {out}), /*conv1d=*/true}.detect_zero();
    };
    for (int64_t l = 0; l < info_.n_layer; ++l) {
      const std::string p = "transformer.h." + std::to_string(l);
      blocks_.push_back({norm(p + ".ln_1"), norm(p + ".ln_2"), conv1d(p + ".attn.c_attn", C, 3 * C),
                         conv1d(p + ".attn.c_proj", C, C), conv1d(p + ".mlp.c_fc", C, F),
                         conv1d(p + ".mlp.c_proj", F, C)});
    }
    ln_f_ = norm("transformer.ln_f");
    // The head is tied to wte; a checkpoint may still store the copy.
    if (w.has("lm_head.weight")) w.take("lm_head.weight", {info_.vocab_size, C});
    w.expect_consumed({".attn.bias", ".attn.masked_bias"});
  }

  const ModelInfo& info() const override { return info_; }
  torch::Device device() const override { return device_; }
  torch::Dtype dtype() const override { return dtype_; }
  const Linear& edited_module(int64_t layer) const override { return blocks_.at(layer).c_proj; }

  torch::Tensor embed(const TokenBatch& batch) const override {
    const auto B = batch.ids.size(0), T = batch.ids.size(1), C = info_.d_model;
    return wte_.index_select(0, batch.ids.flatten()).view({B, T, C}) +
           wpe_.index_select(0, batch.positions.flatten()).view({B, T, C});  // (B, T, C)
  }

  torch::Tensor blocks_from(int64_t first_layer, torch::Tensor h, const TokenBatch& batch, ForwardHooks* hooks,
                            KvCache* cache) const override {
    ForwardHooks no_hooks;
    ForwardHooks& hook = hooks ? *hooks : no_hooks;
    const ForwardContext ctx{batch.real};
    const int64_t C = info_.d_model;
    const auto mask = attention_mask(batch, cache);                     // (B, 1, T, S)
    for (int64_t l = first_layer; l < info_.n_layer; ++l) {
      const auto& b = blocks_[l];
      auto qkv = b.c_attn(b.ln_1(h)).split(C, -1);                      // 3 × (B, T, C)
      auto q = split_heads(qkv[0], info_.n_head);                       // (B, H, T, D)
      auto [k, v] = cache_kv(cache, l, split_heads(qkv[1], info_.n_head), split_heads(qkv[2], info_.n_head));  // (B, H, S, D)
      const double scale = 1.0 / std::sqrt(static_cast<double>(C / info_.n_head)) / (scale_by_layer_ ? l + 1 : 1);
      auto y = at::scaled_dot_product_attention(q, k, v, mask, 0.0, false, scale);  // (B, H, T, D)
      h = h + b.attn_proj(merge_heads(y));                              // (B, T, C)
      auto x = activate(b.c_fc(b.ln_2(h)), act_);                       // (B, T, F): the key space
      h = h + hook.edited_module(l, x, b.c_proj, ctx);                  // (B, T, C)
      h = hook.block_output(l, h, ctx);
      if (l == hook.last_layer()) return {};  // the caller only wanted activations up to here
    }
    commit_cache(cache, batch);
    return h;                                                           // (B, T, C)
  }

  torch::Tensor head(const torch::Tensor& h) const override {
    return torch::matmul(ln_f_(h), wte_.t());                           // (…, V): tied to wte
  }

 private:
  ModelInfo info_;
  torch::Device device_;
  torch::Dtype dtype_;
  Activation act_ = Activation::GeluTanh;
  bool scale_by_layer_ = false;
  torch::Tensor wte_, wpe_;  // (V, C), (n_ctx, C)
  std::vector<Gpt2Block> blocks_;
  LayerNorm ln_f_;
};

}  // namespace

std::unique_ptr<CausalLM> make_gpt2(const std::string& dir, const Json& config, torch::Device device, torch::Dtype dtype) {
  return std::make_unique<Gpt2>(dir, config, device, dtype);
}

}  // namespace comeba
