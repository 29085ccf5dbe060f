#include "models/inference.h"

#include <ATen/CPUGeneratorImpl.h>

#include "common/error.h"

namespace comeba {

void validate_tokens(const CausalLM& model, const TokenRows& rows, int64_t extra) {
  const auto& info = model.info();
  if (rows.empty()) fail(ErrorCode::InvalidArgument, "the batch is empty");
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].empty()) fail(ErrorCode::InvalidArgument, "row " + std::to_string(r) + " has no tokens");
    if (static_cast<int64_t>(rows[r].size()) + extra > info.n_ctx)
      fail(ErrorCode::InvalidArgument, "row " + std::to_string(r) + " needs " + std::to_string(rows[r].size() + extra) +
                                           " positions but the model's context is " + std::to_string(info.n_ctx));
    for (int64_t id : rows[r])
      if (id < 0 || id >= info.vocab_size)
        fail(ErrorCode::InvalidArgument, "row " + std::to_string(r) + " holds token id " + std::to_string(id) +
                                             " outside the vocabulary [0, " + std::to_string(info.vocab_size) + ")");
  }
}

ForwardResult run_forward(const CausalLM& model, const TokenRows& rows, bool left_pad, std::vector<ProbeSpec> probes,
                          ForwardHooks* base) {
  validate_tokens(model, rows);
  c10::InferenceMode inference;
  const auto batch = TokenBatch::pack(rows, left_pad, /*pad_id=*/0, model.device());
  ProbeHooks hooks(model, std::move(probes), batch, base);
  ForwardResult result;
  result.logits = model.forward(batch, &hooks, nullptr).to(torch::kCPU, torch::kFloat32).contiguous();
  result.records = hooks.records();
  return result;
}

std::vector<int64_t> generate(const CausalLM& model, const std::vector<int64_t>& prompt, const GenerateOptions& options,
                              ForwardHooks* hooks) {
  const int64_t max_new_tokens = options.max_new_tokens;
  if (max_new_tokens < 0) fail(ErrorCode::InvalidArgument, "maxNewTokens must be ≥ 0");
  if (options.top_k < 0) fail(ErrorCode::InvalidArgument, "topK must be ≥ 0");
  validate_tokens(model, {prompt}, max_new_tokens);
  c10::InferenceMode inference;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  KvCache cache;
  auto batch = TokenBatch::pack({prompt}, false, 0, model.device());
  std::vector<int64_t> generated;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    auto h = model.hidden(batch, hooks, &cache);                         // (1, T, C)
    if (hooks && hooks->cache_stale()) {
      // A hook decision at an earlier position changed: recompute the whole sequence, as without a cache.
      std::vector<int64_t> sequence = prompt;
      sequence.insert(sequence.end(), generated.begin(), generated.end());
      hooks->reset_sequence();
      cache = KvCache();
      batch = TokenBatch::pack({sequence}, false, 0, model.device());
      h = model.hidden(batch, hooks, &cache);
    }
    // The head only at the last position: the one generation reads.
    auto last = model.head(h.select(1, h.size(1) - 1)).squeeze(0).to(torch::kCPU, torch::kFloat32);  // (V)
    if (!torch::isfinite(last).all().item<bool>())
      fail(ErrorCode::NumericalFailure, "the model's logits contain NaN or Inf (an overflow in " + std::string(c10::toString(model.dtype())) +
                                            "?); generation stopped after " + std::to_string(generated.size()) + " tokens");
    int64_t next = last.argmax().item<int64_t>();
    if (options.top_k > 0) {
      auto [values, ids] = last.topk(std::min(options.top_k, last.size(0)));
      next = ids[torch::multinomial(torch::softmax(values, 0), 1, false, generator).item<int64_t>()].item<int64_t>();
    }
    generated.push_back(next);
    if (options.stop_at_eos && next == model.info().eos_token_id) break;
    batch.ids = torch::full({1, 1}, next, torch::TensorOptions().dtype(torch::kInt64).device(model.device()));
    batch.real = torch::ones({1, 1}, torch::TensorOptions().dtype(torch::kBool).device(model.device()));
    batch.positions = cache.next_position.view({1, 1});
    batch.lengths = {1};
    batch.offsets = {0};
  }
  return generated;
}

}  // namespace comeba
