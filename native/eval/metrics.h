// Teacher-forced scoring of target continuations, the primitive behind EasyEdit's metrics and MEMIT's
// probability metrics (METHOD.md §6): for each row prompt ++ target, the argmax prediction at every
// target position and the mean negative log-likelihood of the target tokens.
#pragma once

#include <vector>

#include "models/inference.h"

namespace comeba {

struct TargetScores {
  std::vector<std::vector<int64_t>> argmax;  // per row: one predicted id per target token
  std::vector<double> mean_nll;              // per row: mean −log p(target token) over the target
};

// `prompts[i]` and `targets[i]` (both non-empty) are scored as one right-padded batch; `hooks` may be null.
TargetScores score_targets(const CausalLM& model, const TokenRows& prompts, const TokenRows& targets, ForwardHooks* hooks);

}  // namespace comeba
