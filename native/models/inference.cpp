#include "models/inference.h"

#include <ATen/CPUGeneratorImpl.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <map>

#include "common/device.h"
#include "common/error.h"

namespace comeba {

namespace {
std::atomic<int64_t> steps_{0}, stale_steps_{0}, recomputed_rows_{0}, recomputed_positions_{0}, row_steps_{0};
}  // namespace

DecodeCounts decode_counts() {
  return {steps_.load(), stale_steps_.load(), recomputed_rows_.load(), recomputed_positions_.load(), row_steps_.load()};
}

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
                          ForwardHooks* base, bool last_only) {
  validate_tokens(model, rows);
  c10::InferenceMode inference;
  const auto batch = TokenBatch::pack(rows, left_pad, /*pad_id=*/0, model.device());
  ProbeHooks hooks(model, std::move(probes), batch, base);
  ForwardResult result;
  auto h = model.hidden(batch, &hooks, nullptr);  // (B, T, C)
  if (last_only) {
    std::vector<int64_t> last;
    for (size_t b = 0; b < rows.size(); ++b) last.push_back(batch.offsets[b] + batch.lengths[b] - 1);
    auto at = device_ints(last, h.device()).view({-1, 1, 1}).expand({-1, 1, h.size(2)});
    h = h.gather(1, at).squeeze(1);  // (B, C)
  }
  result.logits = model.head(h).to(torch::kCPU, torch::kFloat32).contiguous();
  result.records = hooks.records();
  return result;
}

namespace {

// The logits at each row's last position (B, V) float32 on the CPU, refusing NaN/Inf (an overflow in
// float16/bfloat16 would otherwise decode as token 0).
torch::Tensor last_logits(const CausalLM& model, const torch::Tensor& h, size_t generated) {
  auto last = model.head(h.select(1, h.size(1) - 1)).to(torch::kCPU, torch::kFloat32);  // (B, V)
  if (!torch::isfinite(last).all().item<bool>())
    fail(ErrorCode::NumericalFailure, "the model's logits contain NaN or Inf (an overflow in " + std::string(c10::toString(model.dtype())) +
                                          "?); generation stopped after " + std::to_string(generated) + " tokens");
  return last;
}

// The batch of one new token per row that continues `cache`.
TokenBatch next_tokens(const torch::Tensor& next, const KvCache& cache, torch::Device device) {
  const int64_t B = next.size(0);
  TokenBatch batch;
  batch.ids = next.to(device).view({B, 1});
  batch.real = torch::ones({B, 1}, torch::TensorOptions().dtype(torch::kBool).device(device));
  batch.positions = cache.next_position.view({B, 1});
  batch.lengths.assign(B, 1);
  batch.offsets.assign(B, 0);
  return batch;
}

// One decoding step's final residual stream (B, T, C). When a hook decision at an earlier position changed, the
// cache is stale from there in the rows where it changed: those rows alone are recomputed from the first changed
// column (their cache and the hooks' history kept before it), until no decision changes; the result equals
// recomputing every row's whole sequence, as without a cache.
torch::Tensor decode_step(const CausalLM& model, TokenBatch& batch, KvCache& cache, ForwardHooks* hooks,
                          const TokenRows& prompts, const TokenRows& generated) {
  auto h = model.hidden(batch, hooks, &cache);
  ++steps_;
  row_steps_ += h.size(0);
  if (!hooks || !hooks->cache_stale()) return h;
  ++stale_steps_;
  TokenRows sequences = prompts;
  for (size_t r = 0; r < sequences.size(); ++r) sequences[r].insert(sequences[r].end(), generated[r].begin(), generated[r].end());
  const auto whole = TokenBatch::pack(sequences, /*left_pad=*/true, 0, model.device());  // the cache's columns
  const int64_t S = whole.ids.size(1);
  while (hooks->cache_stale()) {
    auto from = hooks->stale_from().to(torch::kCPU);                        // (B)
    auto rows = (from >= 0).nonzero().squeeze(1);                            // (R)
    const int64_t p = from.index_select(0, rows).min().item<int64_t>();
    auto on_device = rows.to(model.device());
    KvCache part;
    if (p > 0) {
      for (size_t l = 0; l < cache.keys.size(); ++l) {
        part.keys.push_back(cache.keys[l].index_select(0, on_device).narrow(2, 0, p));
        part.values.push_back(cache.values[l].index_select(0, on_device).narrow(2, 0, p));
      }
      part.real = cache.real.index_select(0, on_device).narrow(1, 0, p);
    }
    TokenBatch redo;
    auto take = [&](const torch::Tensor& t) { return t.index_select(0, on_device).narrow(1, p, S - p); };
    redo.ids = take(whole.ids);
    redo.real = take(whole.real);
    redo.positions = take(whole.positions);
    redo.lengths.assign(rows.size(0), S - p);
    redo.offsets.assign(rows.size(0), 0);
    recomputed_rows_ += rows.size(0);
    recomputed_positions_ += rows.size(0) * (S - p);
    hooks->narrow_sequence(on_device, p);
    auto redone = model.hidden(redo, hooks, &part);                          // (R, S − p, C)
    hooks->merge_sequence();
    for (size_t l = 0; l < cache.keys.size(); ++l) {
      cache.keys[l].index_copy_(0, on_device, part.keys[l]);
      cache.values[l].index_copy_(0, on_device, part.values[l]);
    }
    h.index_copy_(0, on_device, redone.narrow(1, redone.size(1) - h.size(1), h.size(1)));
  }
  return h;
}

}  // namespace

namespace {

// The next token drawn from logits (V) under temperature, top-k and top-p (GenerateOptions), float64 throughout.
int64_t sample_token(const torch::Tensor& logits, const GenerateOptions& options, at::Generator& generator) {
  const double temperature = options.temperature > 0 ? options.temperature : 1.0;
  if (options.top_k > 0 && options.top_p >= 1) {
    // Top-k alone: a draw among the k scores, as comeba always drew it, so a seed gives the tokens it gave before
    // (the editor's context templates come from these draws); the same distribution as the masked path below.
    auto [values, ids] = logits.topk(std::min(options.top_k, logits.size(0)));
    return ids[torch::multinomial(torch::softmax(values / temperature, 0), 1, false, generator).item<int64_t>()].item<int64_t>();
  }
  auto scores = logits.to(torch::kFloat64) / temperature;  // (V)
  const auto none = -std::numeric_limits<double>::infinity();
  if (options.top_k > 0 && options.top_k < scores.size(0)) {
    auto kth = std::get<0>(scores.topk(options.top_k)).min();
    scores = scores.masked_fill(scores < kth, none);
  }
  if (options.top_p < 1) {
    auto [sorted, order] = scores.sort(/*dim=*/0, /*descending=*/true);
    auto probs = torch::softmax(sorted, 0);
    // Drop a token once the more likely ones already reach top_p; the most likely always stays.
    auto drop = (probs.cumsum(0) - probs) >= options.top_p;
    scores = scores.index_put({order.masked_select(drop)}, torch::tensor(none, scores.options()));
  }
  return torch::multinomial(torch::softmax(scores, 0), 1, false, generator).item<int64_t>();
}

}  // namespace

std::vector<int64_t> generate(const CausalLM& model, const std::vector<int64_t>& prompt, const GenerateOptions& options,
                              ForwardHooks* hooks) {
  const int64_t max_new_tokens = options.max_new_tokens;
  if (max_new_tokens < 0) fail(ErrorCode::InvalidArgument, "maxNewTokens must be ≥ 0");
  if (options.top_k < 0) fail(ErrorCode::InvalidArgument, "topK must be ≥ 0");
  if (!(options.top_p > 0 && options.top_p <= 1)) fail(ErrorCode::InvalidArgument, "topP must be in (0, 1]");
  if (!(options.temperature >= 0 && std::isfinite(options.temperature))) fail(ErrorCode::InvalidArgument, "temperature must be a number ≥ 0");
  validate_tokens(model, {prompt}, max_new_tokens);
  const bool sample = options.temperature > 0 || options.top_k > 0 || options.top_p < 1;
  c10::InferenceMode inference;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  KvCache cache;
  auto batch = TokenBatch::pack({prompt}, false, 0, model.device());
  TokenRows generated(1);
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    auto h = decode_step(model, batch, cache, hooks, {prompt}, generated);  // (1, T, C)
    auto last = last_logits(model, h, generated[0].size()).squeeze(0);       // (V)
    const int64_t next = sample ? sample_token(last, options, generator) : last.argmax().item<int64_t>();
    generated[0].push_back(next);
    if (options.on_token && !options.on_token(next)) break;
    if (options.stop_at_eos && next == model.info().eos_token_id) break;
    batch = next_tokens(torch::tensor({next}, torch::kInt64), cache, model.device());
  }
  return generated[0];
}

TokenRows generate_greedy(const CausalLM& model, const TokenRows& prompts, const std::vector<int64_t>& max_new_tokens,
                          ForwardHooks* hooks) {
  if (prompts.size() != max_new_tokens.size()) fail(ErrorCode::InvalidArgument, "one maxNewTokens per prompt is needed");
  // Rows of one length decode together: a row that rode along past its own length could run out of context.
  std::map<int64_t, std::vector<size_t>> groups;
  for (size_t r = 0; r < prompts.size(); ++r) {
    if (max_new_tokens[r] < 0) fail(ErrorCode::InvalidArgument, "row " + std::to_string(r) + ": maxNewTokens must be ≥ 0");
    validate_tokens(model, {prompts[r]}, max_new_tokens[r]);
    groups[max_new_tokens[r]].push_back(r);
  }
  TokenRows out(prompts.size());
  c10::InferenceMode inference;
  for (const auto& [steps, rows] : groups) {
    if (steps == 0) continue;
    TokenRows group_prompts, generated(rows.size());
    for (size_t r : rows) group_prompts.push_back(prompts[r]);
    if (hooks) hooks->reset_sequence();
    KvCache cache;
    auto batch = TokenBatch::pack(group_prompts, /*left_pad=*/true, 0, model.device());
    for (int64_t step = 0; step < steps; ++step) {
      auto h = decode_step(model, batch, cache, hooks, group_prompts, generated);  // (B, T, C)
      auto next = last_logits(model, h, step).argmax(-1);                         // (B)
      const auto* ids = next.data_ptr<int64_t>();
      for (size_t i = 0; i < rows.size(); ++i) generated[i].push_back(ids[i]);
      batch = next_tokens(next, cache, model.device());
    }
    for (size_t i = 0; i < rows.size(); ++i) out[rows[i]] = std::move(generated[i]);
  }
  return out;
}

}  // namespace comeba
