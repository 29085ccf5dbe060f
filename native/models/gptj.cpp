// GPT-J, read top to bottom: token embeddings, n_layer parallel blocks (attention with rotary position
// embeddings and the MLP both read ln_1(h) and are added to the residual together), final layer norm,
// untied head with bias. Weights keep HF's names and nn.Linear layout ([out, in], y = xWᵀ + b).
#include <cmath>

#include "common/error.h"
#include "io/checkpoint.h"
#include "models/layers.h"
#include "models/registry.h"

namespace comeba {
namespace {

struct GptjBlock {
  LayerNorm ln_1;
  Linear q_proj, k_proj, v_proj, out_proj;  // C → C, no bias
  Linear fc_in;                             // C → F
  Linear fc_out;                            // F → C, the edited module
};

// Rotates pairs (x0, x1) → (−x1, x0) along the last dim: GPT-J interleaves its rotary pairs.
torch::Tensor rotate_every_two(const torch::Tensor& x) {
  using torch::indexing::Slice;
  auto even = x.index({"...", Slice(0, torch::indexing::None, 2)});
  auto odd = x.index({"...", Slice(1, torch::indexing::None, 2)});
  return torch::stack({-odd, even}, -1).flatten(-2);
}

class GptJ final : public CausalLM {
 public:
  GptJ(const std::string& dir, const Json& config, torch::Device device, torch::Dtype dtype)
      : info_(read_model_info(config, dir, "gptj", "transformer.h.{}.mlp.fc_out")), device_(device), dtype_(dtype) {
    const int64_t head_dim = info_.d_model / info_.n_head;
    rotary_dim_ = config_int_or(config, "rotary_dim", head_dim);
    if (rotary_dim_ <= 0 || rotary_dim_ > head_dim || rotary_dim_ % 2 != 0)
      fail(ErrorCode::InvalidCheckpoint, "rotary_dim must be even and at most the head size in " + dir + "/config.json");
    act_ = parse_activation(config_string_or(config, "activation_function", "gelu_new"), dir);
    const double eps = config_double_or(config, "layer_norm_epsilon", 1e-5);

    // Rotary frequencies; the angles are computed per forward for the positions present, not as an
    // (n_ctx, R) table up front (a config's n_positions alone must not decide how much memory a load takes).
    inv_freq_ = (1.0 / torch::pow(10000.0, torch::arange(0, rotary_dim_, 2, torch::kFloat64) / rotary_dim_)).to(device);

    CheckpointWeights w(dir, device, dtype);
    const int64_t C = info_.d_model, F = info_.d_ff;
    wte_ = w.take("transformer.wte.weight", {info_.vocab_size, C});
    auto norm = [&](const std::string& p) {
      return LayerNorm{w.take(p + ".weight", {C}), w.take(p + ".bias", {C}), eps};
    };
    auto linear = [&](const std::string& p, int64_t in, int64_t out, bool bias) {
      return Linear{w.take(p + ".weight", {out, in}), bias ? w.take(p + ".bias", {out}) : torch::Tensor(), false}.detect_zero();
    };
    for (int64_t l = 0; l < info_.n_layer; ++l) {
      const std::string p = "transformer.h." + std::to_string(l);
      blocks_.push_back({norm(p + ".ln_1"), linear(p + ".attn.q_proj", C, C, false),
                         linear(p + ".attn.k_proj", C, C, false), linear(p + ".attn.v_proj", C, C, false),
                         linear(p + ".attn.out_proj", C, C, false), linear(p + ".mlp.fc_in", C, F, true),
                         linear(p + ".mlp.fc_out", F, C, true)});
    }
    ln_f_ = norm("transformer.ln_f");
    lm_head_ = linear("lm_head", C, info_.vocab_size, true);
    w.expect_consumed({".attn.bias", ".attn.masked_bias"});
  }

  const ModelInfo& info() const override { return info_; }
  torch::Device device() const override { return device_; }
  torch::Dtype dtype() const override { return dtype_; }
  const Linear& edited_module(int64_t layer) const override { return blocks_.at(layer).fc_out; }

  torch::Tensor embed(const TokenBatch& batch) const override {
    return wte_.index_select(0, batch.ids.flatten()).view({batch.ids.size(0), batch.ids.size(1), info_.d_model});  // (B, T, C)
  }

  torch::Tensor blocks_from(int64_t first_layer, torch::Tensor h, const TokenBatch& batch, ForwardHooks* hooks,
                            KvCache* cache) const override {
    ForwardHooks no_hooks;
    ForwardHooks& hook = hooks ? *hooks : no_hooks;
    const ForwardContext ctx{batch.real};
    const int64_t B = batch.ids.size(0), T = batch.ids.size(1), H = info_.n_head, D = info_.d_model / H;
    const auto mask = attention_mask(batch, cache);                             // (B, 1, T, S)
    // Per-token rotary factors: angles in float32 as HF computes them, each repeated for its interleaved pair.
    auto angles = (batch.positions.to(torch::kFloat64).unsqueeze(-1) * inv_freq_).to(torch::kFloat32);  // (B, T, R/2)
    auto sin = angles.sin().repeat_interleave(2, -1).to(dtype_).view({B, T, 1, -1});  // (B, T, 1, R)
    auto cos = angles.cos().repeat_interleave(2, -1).to(dtype_).view({B, T, 1, -1});  // (B, T, 1, R)
    auto rotary = [&](const torch::Tensor& x) {                                 // (B, T, H, D)
      auto rot = x.narrow(-1, 0, rotary_dim_);
      auto rotated = rot * cos + rotate_every_two(rot) * sin;
      return torch::cat({rotated, x.narrow(-1, rotary_dim_, D - rotary_dim_)}, -1).transpose(1, 2);  // (B, H, T, D)
    };

    for (int64_t l = first_layer; l < info_.n_layer; ++l) {
      const auto& b = blocks_[l];
      auto a = b.ln_1(h);                                                        // (B, T, C)
      auto q = rotary(b.q_proj(a).view({B, T, H, D}));                           // (B, H, T, D)
      auto [k, v] = cache_kv(cache, l, rotary(b.k_proj(a).view({B, T, H, D})),
                             b.v_proj(a).view({B, T, H, D}).transpose(1, 2));    // (B, H, S, D)
      auto y = at::scaled_dot_product_attention(q, k, v, mask);                  // (B, H, T, D)
      auto x = activate(b.fc_in(a), act_);                                       // (B, T, F): the key space
      h = h + b.out_proj(merge_heads(y)) + hook.edited_module(l, x, b.fc_out, ctx);  // (B, T, C)
      h = hook.block_output(l, h, ctx);
      if (l == hook.last_layer()) return {};  // the caller only wanted activations up to here
    }
    commit_cache(cache, batch);
    return h;                                                                    // (B, T, C)
  }

  torch::Tensor head(const torch::Tensor& h) const override {
    return lm_head_(ln_f_(h));                                                   // (…, V)
  }

 private:
  ModelInfo info_;
  torch::Device device_;
  torch::Dtype dtype_;
  Activation act_ = Activation::GeluTanh;
  int64_t rotary_dim_ = 0;
  torch::Tensor inv_freq_;   // (R/2,) float64
  torch::Tensor wte_;        // (V, C)
  std::vector<GptjBlock> blocks_;
  LayerNorm ln_f_;
  Linear lm_head_;           // C → V, with bias
};

}  // namespace

std::unique_ptr<CausalLM> make_gptj(const std::string& dir, const Json& config, torch::Device device, torch::Dtype dtype) {
  return std::make_unique<GptJ>(dir, config, device, dtype);
}

}  // namespace comeba
