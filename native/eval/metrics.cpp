#include "eval/metrics.h"

#include "common/device.h"
#include "common/error.h"

namespace comeba {

TargetScores score_targets(const CausalLM& model, const TokenRows& prompts, const TokenRows& targets, ForwardHooks* hooks) {
  if (prompts.size() != targets.size()) fail(ErrorCode::InvalidArgument, "one target per prompt is needed");
  TokenRows rows;
  std::vector<int64_t> pos_rows, pos_cols, ids;
  for (size_t r = 0; r < prompts.size(); ++r) {
    if (targets[r].empty()) fail(ErrorCode::InvalidArgument, "row " + std::to_string(r) + " has an empty target");
    auto row = prompts[r];
    // EasyEdit's row: the prompt and the whole target (METHOD.md §6). The last target token predicts nothing
    // scored, but the validated hook's z-score is taken over the whole row, so it belongs there.
    row.insert(row.end(), targets[r].begin(), targets[r].end());
    for (size_t t = 0; t < targets[r].size(); ++t) {
      pos_rows.push_back(static_cast<int64_t>(r));
      pos_cols.push_back(static_cast<int64_t>(prompts[r].size() - 1 + t));
      ids.push_back(targets[r][t]);
    }
    rows.push_back(std::move(row));
  }
  validate_tokens(model, rows);
  c10::InferenceMode inference;
  const auto dev = model.device();
  auto h = model.hidden(TokenBatch::pack(rows, false, 0, dev), hooks, nullptr);           // (B, T, C)
  // The head only where a target is scored: (M, V) instead of (B, T, V).
  auto picked = model.head(h.index({device_ints(pos_rows, dev), device_ints(pos_cols, dev)})).to(torch::kFloat32);
  auto argmax = picked.argmax(-1).to(torch::kCPU);                                           // (M)
  auto nll = (-torch::log_softmax(picked, -1).gather(1, device_ints(ids, dev).unsqueeze(1)).squeeze(1)).to(torch::kCPU, torch::kFloat64);

  TargetScores scores;
  const auto* a = argmax.data_ptr<int64_t>();
  const auto* n = nll.data_ptr<double>();
  for (size_t r = 0, k = 0; r < targets.size(); ++r) {
    std::vector<int64_t> row_argmax;
    double sum = 0;
    for (size_t t = 0; t < targets[r].size(); ++t, ++k) {
      row_argmax.push_back(a[k]);
      sum += n[k];
    }
    scores.argmax.push_back(std::move(row_argmax));
    scores.mean_nll.push_back(sum / static_cast<double>(targets[r].size()));
  }
  return scores;
}

}  // namespace comeba
