// The Llama family, read top to bottom: token embeddings, n_layer pre-norm blocks (RMSNorm → grouped-query
// attention with rotary position embeddings, RMSNorm → SwiGLU MLP, each added to the residual stream),
// final RMSNorm, head (tied to the embeddings or not). Weights keep HF's names and nn.Linear layout
// ([out, in], y = xWᵀ + b). The four model_types differ only in the switches of kVariants (transformers
// itself derives Mistral, Qwen2 and Qwen3 from its Llama code):
//   llama    Llama 2, Llama 3/3.1/3.2 (rope_scaling "llama3"), optional attention/MLP biases
//   mistral  a sliding attention window (refused when a sequence is longer than it)
//   qwen2    biases on q, k and v
//   qwen3    RMSNorm on each head's q and k before the rotation
#include <cmath>

#include "common/error.h"
#include "io/checkpoint.h"
#include "models/layers.h"
#include "models/registry.h"

namespace comeba {
namespace {

enum class Biases { None, FromConfig, Qkv };  // FromConfig: q, k, v and o as attention_bias says

struct Variant {
  const char* model_type;
  Biases biases;
  bool qk_norm;
  const char* window_flag;  // the config key that turns the sliding window on ("" : always on if set)
};

constexpr Variant kVariants[] = {
    {"llama", Biases::FromConfig, false, nullptr},
    {"mistral", Biases::None, false, ""},
    {"qwen2", Biases::Qkv, false, "use_sliding_window"},
    {"qwen3", Biases::FromConfig, true, "use_sliding_window"},
};

struct LlamaBlock {
  RmsNorm input_layernorm, post_attention_layernorm;
  Linear q_proj, k_proj, v_proj, o_proj;  // C → H·D, C → KV·D, C → KV·D, H·D → C
  RmsNorm q_norm, k_norm;                 // over D (qwen3 only)
  Linear gate_proj, up_proj;              // C → F
  Linear down_proj;                       // F → C, the edited module
};

// Rotates halves (x1, x2) → (−x2, x1) along the last dim: Llama pairs dimension i with i + D/2.
torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

const Json* config_object(const Json& config, const char* key) {
  const Json* v = config.find(key);
  return v && v->is_object() ? v : nullptr;
}

// Inverse rotary frequencies (D/2,) in float32, computed as transformers does (float32 pow), with the
// rope scaling the config names: none/"default", or "llama3". Others are refused, not approximated.
torch::Tensor rotary_inv_freq(const Json& config, int64_t head_dim, const std::string& dir) {
  // transformers ≥ 5 writes rope_parameters (θ inside); older configs rope_theta and rope_scaling.
  const Json* params = config_object(config, "rope_parameters");
  if (!params) params = config_object(config, "rope_scaling");
  double theta = config_double_or(config, "rope_theta", 10000.0);
  std::string type = "default";
  if (params) {
    theta = config_double_or(*params, "rope_theta", theta);
    type = config_string_or(*params, "rope_type", config_string_or(*params, "type", "default"));
  }
  auto inv_freq = 1.0 / torch::pow(theta, torch::arange(0, head_dim, 2, torch::kInt64).to(torch::kFloat32) / head_dim);
  if (type == "default") return inv_freq;
  if (type != "llama3")
    fail(ErrorCode::UnsupportedArchitecture, "rope type '" + type + "' in " + dir + "/config.json is not supported (default, llama3)");
  const double factor = config_double_or(*params, "factor", 8.0);
  const double low = config_double_or(*params, "low_freq_factor", 1.0);
  const double high = config_double_or(*params, "high_freq_factor", 4.0);
  const double old_context = static_cast<double>(config_int_or(*params, "original_max_position_embeddings", 8192));
  if (!(factor > 0 && high > low && old_context > 0))
    fail(ErrorCode::InvalidCheckpoint, "the llama3 rope scaling in " + dir + "/config.json is inconsistent");
  auto wavelen = 2 * M_PI / inv_freq;
  auto scaled = torch::where(wavelen > old_context / low, inv_freq / factor, inv_freq);
  auto smooth = (old_context / wavelen - low) / (high - low);
  auto smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
  auto medium = (wavelen >= old_context / high) & (wavelen <= old_context / low);
  return torch::where(medium, smoothed, scaled);
}

class Llama final : public CausalLM {
 public:
  Llama(const Variant& variant, const std::string& dir, const Json& config, torch::Device device, torch::Dtype dtype)
      : variant_(variant), info_(read_model_info(config, dir, variant.model_type, "model.layers.{}.mlp.down_proj", kLlamaSizes)), device_(device), dtype_(dtype) {
    const std::string act = config_string_or(config, "hidden_act", "silu");
    if (act != "silu") fail(ErrorCode::UnsupportedArchitecture, "hidden_act '" + act + "' in " + dir + "/config.json is not supported (silu)");
    const int64_t C = info_.d_model, F = info_.d_ff, H = info_.n_head;
    n_kv_ = config_int_or(config, "num_key_value_heads", H);
    head_dim_ = config_int_or(config, "head_dim", C / H);
    if (n_kv_ <= 0 || H % n_kv_ != 0 || head_dim_ <= 0 || head_dim_ % 2 != 0)
      fail(ErrorCode::InvalidCheckpoint, "num_key_value_heads must divide num_attention_heads and head_dim be even in " + dir + "/config.json");
    if (variant_.window_flag && (*variant_.window_flag == 0 || config_bool_or(config, variant_.window_flag, false)))
      window_ = config_int_or(config, "sliding_window", 0);  // null: no window
    const double eps = config_double_or(config, "rms_norm_eps", 1e-6);
    const bool attention_bias = variant_.biases == Biases::FromConfig && config_bool_or(config, "attention_bias", false);
    const bool qkv_bias = attention_bias || variant_.biases == Biases::Qkv, o_bias = attention_bias;
    const bool mlp_bias = config_bool_or(config, "mlp_bias", false);
    inv_freq_ = rotary_inv_freq(config, head_dim_, dir).to(device);

    CheckpointWeights w(dir, device, dtype);
    embed_tokens_ = w.take("model.embed_tokens.weight", {info_.vocab_size, C});
    auto norm = [&](const std::string& p, int64_t dim) { return RmsNorm{w.take(p + ".weight", {dim}), eps}; };
    auto linear = [&](const std::string& p, int64_t in, int64_t out, bool bias) {
      return Linear{w.take(p + ".weight", {out, in}), bias ? w.take(p + ".bias", {out}) : torch::Tensor(), false}.detect_zero();
    };
    const int64_t D = head_dim_;
    for (int64_t l = 0; l < info_.n_layer; ++l) {
      const std::string p = "model.layers." + std::to_string(l);
      blocks_.push_back({norm(p + ".input_layernorm", C), norm(p + ".post_attention_layernorm", C),
                         linear(p + ".self_attn.q_proj", C, H * D, qkv_bias),
                         linear(p + ".self_attn.k_proj", C, n_kv_ * D, qkv_bias),
                         linear(p + ".self_attn.v_proj", C, n_kv_ * D, qkv_bias),
                         linear(p + ".self_attn.o_proj", H * D, C, o_bias),
                         variant_.qk_norm ? norm(p + ".self_attn.q_norm", D) : RmsNorm{},
                         variant_.qk_norm ? norm(p + ".self_attn.k_norm", D) : RmsNorm{},
                         linear(p + ".mlp.gate_proj", C, F, mlp_bias), linear(p + ".mlp.up_proj", C, F, mlp_bias),
                         linear(p + ".mlp.down_proj", F, C, mlp_bias)});
    }
    norm_ = norm("model.norm", C);
    if (config_bool_or(config, "tie_word_embeddings", false)) {
      if (w.has("lm_head.weight")) w.take("lm_head.weight", {info_.vocab_size, C});  // a stored copy
    } else {
      lm_head_ = w.take("lm_head.weight", {info_.vocab_size, C});
    }
    w.expect_consumed({".rotary_emb.inv_freq"});
  }

  const ModelInfo& info() const override { return info_; }
  torch::Device device() const override { return device_; }
  torch::Dtype dtype() const override { return dtype_; }
  const Linear& edited_module(int64_t layer) const override { return blocks_.at(layer).down_proj; }

  torch::Tensor embed(const TokenBatch& batch) const override {
    return embed_tokens_.index_select(0, batch.ids.flatten()).view({batch.ids.size(0), batch.ids.size(1), info_.d_model});  // (B, T, C)
  }

  torch::Tensor blocks_from(int64_t first_layer, torch::Tensor h, const TokenBatch& batch, ForwardHooks* hooks,
                            KvCache* cache) const override {
    ForwardHooks no_hooks;
    ForwardHooks& hook = hooks ? *hooks : no_hooks;
    const ForwardContext ctx{batch.real};
    const int64_t B = batch.ids.size(0), T = batch.ids.size(1), H = info_.n_head, KV = n_kv_, D = head_dim_;
    const int64_t S = (cache ? cache->length() : 0) + T;
    if (window_ > 0 && S > window_)
      fail(ErrorCode::InvalidArgument, "a sequence of " + std::to_string(S) + " positions exceeds this model's sliding window of " +
                                           std::to_string(window_) + " (windowed attention is not implemented)");
    const auto mask = attention_mask(batch, cache);                                      // (B, 1, T, S)
    // Rotary factors per token, in float32 as transformers computes them: cat(θ, θ) over D.
    auto angles = batch.positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_;        // (B, T, D/2)
    angles = torch::cat({angles, angles}, -1).unsqueeze(1);                              // (B, 1, T, D)
    const auto cos = angles.cos().to(dtype_), sin = angles.sin().to(dtype_);
    auto rotary = [&](const torch::Tensor& x) { return x * cos + rotate_half(x) * sin; };  // (B, ·, T, D)

    for (int64_t l = first_layer; l < info_.n_layer; ++l) {
      const auto& b = blocks_[l];
      auto a = b.input_layernorm(h);                                                     // (B, T, C)
      auto q = b.q_proj(a).view({B, T, H, D});                                           // (B, T, H, D)
      auto k = b.k_proj(a).view({B, T, KV, D});                                          // (B, T, KV, D)
      if (variant_.qk_norm) {                                                            // over D
        q = b.q_norm(q);
        k = b.k_norm(k);
      }
      q = rotary(q.transpose(1, 2));                                                     // (B, H, T, D)
      auto [ks, vs] = cache_kv(cache, l, rotary(k.transpose(1, 2)),
                               b.v_proj(a).view({B, T, KV, D}).transpose(1, 2));         // (B, KV, S, D)
      // Grouped-query attention: kv head j serves query heads j·H/KV … (j+1)·H/KV − 1 (enable_gqa: no copies).
      auto y = at::scaled_dot_product_attention(q, ks, vs, mask, 0.0, false, c10::nullopt, /*enable_gqa=*/KV != H);  // (B, H, T, D)
      h = h + b.o_proj(merge_heads(y));                                                  // (B, T, C)
      auto m = b.post_attention_layernorm(h);                                            // (B, T, C)
      auto x = torch::silu(b.gate_proj(m)) * b.up_proj(m);                               // (B, T, F): the key space
      h = h + hook.edited_module(l, x, b.down_proj, ctx);                                // (B, T, C)
      h = hook.block_output(l, h, ctx);
      if (l == hook.last_layer()) return {};  // the caller only wanted activations up to here
    }
    commit_cache(cache, batch);
    return h;                                                                            // (B, T, C)
  }

  torch::Tensor head(const torch::Tensor& h) const override {
    return torch::matmul(norm_(h), (lm_head_.defined() ? lm_head_ : embed_tokens_).t());  // (…, V)
  }

 private:
  Variant variant_;
  ModelInfo info_;
  torch::Device device_;
  torch::Dtype dtype_;
  int64_t n_kv_ = 0, head_dim_ = 0, window_ = 0;
  torch::Tensor inv_freq_;         // (D/2,) float32
  torch::Tensor embed_tokens_;     // (V, C)
  std::vector<LlamaBlock> blocks_;
  RmsNorm norm_;
  torch::Tensor lm_head_;          // (V, C); undefined when tied to embed_tokens
};

}  // namespace

std::unique_ptr<CausalLM> make_llama_family(const std::string& model_type, const std::string& dir, const Json& config,
                                            torch::Device device, torch::Dtype dtype) {
  for (const auto& v : kVariants)
    if (model_type == v.model_type) return std::make_unique<Llama>(v, dir, config, device, dtype);
  return nullptr;
}

}  // namespace comeba
