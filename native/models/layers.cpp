#include "models/layers.h"

#include "common/error.h"

namespace comeba {

Activation parse_activation(const std::string& name, const std::string& dir) {
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::GeluTanh;
  if (name == "gelu") return Activation::GeluErf;
  if (name == "relu") return Activation::Relu;
  fail(ErrorCode::UnsupportedArchitecture, "activation_function '" + name + "' in " + dir + " is not supported");
}

torch::Tensor attention_mask(const TokenBatch& batch, const KvCache* cache) {
  const int64_t past = cache ? cache->length() : 0;
  const int64_t T = batch.ids.size(1);
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(batch.ids.device());
  auto key_real = past > 0 ? torch::cat({cache->real, batch.real}, 1) : batch.real;  // (B, S)
  auto query = torch::arange(past, past + T, opts).unsqueeze(1);                   // (T, 1)
  auto key = torch::arange(past + T, opts).unsqueeze(0);                            // (1, S)
  auto allowed = (key <= query).unsqueeze(0) & key_real.unsqueeze(1);               // (B, T, S)
  return (allowed | (key == query).unsqueeze(0)).unsqueeze(1);                      // (B, 1, T, S)
}

std::pair<torch::Tensor, torch::Tensor> cache_kv(KvCache* cache, int64_t layer, torch::Tensor k, torch::Tensor v) {
  if (!cache) return {k, v};
  if (static_cast<int64_t>(cache->keys.size()) <= layer) {
    cache->keys.resize(layer + 1);
    cache->values.resize(layer + 1);
  }
  auto& ck = cache->keys[layer];
  auto& cv = cache->values[layer];
  ck = ck.defined() ? torch::cat({ck, k}, 2) : k;
  cv = cv.defined() ? torch::cat({cv, v}, 2) : v;
  return {ck, cv};
}

void commit_cache(KvCache* cache, const TokenBatch& batch) {
  if (!cache) return;
  cache->real = cache->real.defined() ? torch::cat({cache->real, batch.real}, 1) : batch.real;
  cache->next_position = std::get<0>(batch.positions.max(1)) + 1;
}

}  // namespace comeba
