// Target values z (MEMIT's compute_z, METHOD.md §3): for every request a δ added to the z-block output at
// the subject's last token, optimised so the model predicts the target. All requests of a batch share
// each forward/backward; every request keeps its own δ, its own early stop and its own norm clamp. A step
// computes only what δ changes: the blocks above the z-layer from the subject's last token on.
#pragma once

#include <functional>
#include <vector>

#include "edit/request.h"
#include "hooks/edit_hooks.h"

namespace comeba {

// Defaults live in lib/edit/options.ts; the binding requires every field.
struct ValueOptions {
  int64_t steps = 0;
  double lr = 0;
  double weight_decay = 0;
  double kl_factor = 0;
  double clamp_norm_factor = 0;
  double early_stop_loss = 0;
  // Every step runs the blocks above the z-layer only from each row's subject-last token on, attending to the
  // earlier positions' keys and values computed once per batch (δ changes nothing before it: attention is
  // causal). false: the whole rows every step, the reference path kept for the equivalence test and the benchmark.
  bool reuse_prefix = true;
};

struct ValueResult {
  torch::Tensor z;                  // (n, C) float64: z_init + δ
  std::vector<double> first_loss;   // per request, before any step
  std::vector<double> final_loss;   // per request, at its last evaluation
  std::vector<int64_t> steps;       // per request, optimisation steps taken
};

// `state` is the edited layers' current hook state, under which the values are optimised.
ValueResult compute_values(const CausalLM& model, const std::vector<HookLayer>& state, int64_t z_layer,
                           const std::vector<EditRequest>& requests, const ValueOptions& options,
                           const std::function<void()>& check_abort);

}  // namespace comeba
