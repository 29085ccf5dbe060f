#include "edit/editor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "common/device.h"
#include "common/error.h"
#include "edit/solve.h"
#include "models/inference.h"

namespace comeba {
namespace {

// Eq. 19 sets α to one prompt's own largest z-score. Computed again in another batch shape or with another
// thread count, that z-score moves by float rounding (by 4e-9 relative on the CPU) and can fall below α, leaving
// the prompt's own edit to chance. α goes this fraction below it.
constexpr double kAlphaRoundingMargin = 1e-5;

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct KeysAndOutputs {
  torch::Tensor keys;   // (n, F) float64: ½ k(bare) + ½ mean k(templates)
  torch::Tensor cur_z;  // (n, C) float64: z-block output at the bare prompts' subject
};

// Every context row of a batch, packed once per edit, with its subject sites; and the residual stream
// entering the first edited layer, which is the same in every keys pass (hooks sit only at edited
// layers), so the blocks below it run once per edit instead of once per layer.
struct KeyBatch {
  TokenBatch tokens;
  TokenSites subject_last;  // every context row's subject-last token
  TokenSites bare;          // the bare prompt's subject-last token, one per request
  TokenBatch bare_tokens;   // the bare prompts alone (the rows z is read from), and their subject-last token there
  TokenSites bare_sites;
  std::vector<int64_t> contexts_per_request;
  int64_t first_layer = 0;
  torch::Tensor h_first;    // (rows, T, C) entering first_layer
  torch::Tensor carried;    // (rows, T) the carried scope's swap mask below first_layer (undefined: none)
};

KeyBatch key_batch(const CausalLM& model, int64_t first_layer, const std::vector<EditRequest>& requests) {
  TokenRows rows, bare;
  std::vector<int64_t> rows_idx, cols, bare_rows, bare_cols, bare_index;
  KeyBatch kb;
  for (const auto& request : requests) {
    for (size_t j = 0; j < request.contexts.size(); ++j) {
      if (j == 0) {
        bare_rows.push_back(rows.size());
        bare_cols.push_back(request.subject_last[0]);
        bare_index.push_back(bare.size());
        bare.push_back(request.contexts[0]);
      }
      rows_idx.push_back(rows.size());
      cols.push_back(request.subject_last[j]);
      rows.push_back(request.contexts[j]);
    }
    kb.contexts_per_request.push_back(static_cast<int64_t>(request.contexts.size()));
  }
  const auto dev = model.device();
  kb.tokens = TokenBatch::pack(rows, false, 0, dev);
  kb.subject_last = {device_ints(rows_idx, dev), device_ints(cols, dev)};
  kb.bare = {device_ints(bare_rows, dev), device_ints(bare_cols, dev)};
  kb.bare_tokens = TokenBatch::pack(bare, false, 0, dev);
  kb.bare_sites = {device_ints(bare_index, dev), kb.bare.cols};
  kb.first_layer = first_layer;
  torch::NoGradGuard no_grad;
  if (first_layer == 0) {
    kb.h_first = model.embed(kb.tokens);
  } else {
    EditHooks prefix({});
    prefix.keep_block_output(first_layer - 1);
    prefix.stop_after(first_layer - 1);
    model.hidden(kb.tokens, &prefix, nullptr);
    kb.h_first = prefix.kept_block_output();
  }
  return kb;
}

// The z-block output at the bare prompts' subject under `state`: only the bare rows run, trimmed to their own length
// (exact: rows never meet in a forward, and the padding after a right-padded row's last token is never attended to),
// from the residual `h` of the whole key batch entering block `from`, or from the embedding when `h` is undefined.
torch::Tensor outputs_at_bare(const CausalLM& model, const KeyBatch& kb, const std::vector<HookLayer>& state, int64_t z_layer,
                              int64_t from = 0, const torch::Tensor& h = {}) {
  EditHooks hooks(state);
  hooks.capture_block_output(z_layer, kb.bare_sites);
  hooks.stop_after(z_layer);
  torch::NoGradGuard no_grad;
  auto start = h.defined() ? h.index_select(0, kb.bare.rows).narrow(1, 0, kb.bare_tokens.ids.size(1)) : model.embed(kb.bare_tokens);
  model.blocks_from(from, start, kb.bare_tokens, &hooks, nullptr);
  return hooks.captured_block_output().to(torch::kFloat64);
}

bool carries(const std::vector<HookLayer>& state) {
  return std::any_of(state.begin(), state.end(), [](const HookLayer& l) { return l.carry; });
}

// The rest of the forward over the key batch under the current hooks: the edited module's input at `layer` (every
// context row, up to `layer`), and the z-block output at the bare prompts' subject (only those rows above `layer`;
// the carried scope passes swap masks between layers, so with it every row runs to the z-block). The layers are
// updated in increasing order, so the residual entering `layer` is the same in every later pass: it is kept in `kb`
// and the next pass starts there (exact: the blocks below run on the same input with the same weights).
KeysAndOutputs keys_and_outputs(const CausalLM& model, KeyBatch& kb, const std::vector<HookLayer>& state,
                                int64_t layer, int64_t z_layer) {
  const bool bare_above = layer < z_layer && !carries(state);
  EditHooks hooks(state);
  hooks.capture_input(layer, kb.subject_last);
  if (!bare_above) hooks.capture_block_output(z_layer, kb.bare);
  hooks.stop_after(bare_above ? layer : z_layer);  // layer ≤ z_layer: z lives at the last edited layer
  if (layer > kb.first_layer) hooks.keep_block_output(layer - 1);
  if (kb.carried.defined()) hooks.start_carried(kb.carried);
  {
    torch::NoGradGuard no_grad;
    model.blocks_from(kb.first_layer, kb.h_first, kb.tokens, &hooks, nullptr);
  }
  auto cur_z = bare_above ? outputs_at_bare(model, kb, state, z_layer, layer + 1, hooks.stopped_output())
                          : hooks.captured_block_output().to(torch::kFloat64);
  if (layer > kb.first_layer) {
    kb.h_first = hooks.kept_block_output();
    kb.carried = hooks.kept_carried();
    kb.first_layer = layer;
  }

  auto k = hooks.captured_input().to(torch::kFloat64);                      // (rows, F)
  const int64_t n = static_cast<int64_t>(kb.contexts_per_request.size());
  auto keys = torch::zeros({n, k.size(1)}, k.options());
  for (int64_t r = 0, i = 0; r < n; ++r) {
    const int64_t c = kb.contexts_per_request[r];
    auto bare = k[i];
    keys[r] = c == 1 ? bare : 0.5 * bare + 0.5 * k.narrow(0, i + 1, c - 1).mean(0);
    i += c;
  }
  return {keys, cur_z};
}

}  // namespace

EditMode parse_edit_mode(const std::string& name) {
  if (name == "comeba-hk") return EditMode::ComebaHk;
  if (name == "comeba-wo-hk") return EditMode::ComebaWithoutHooks;
  if (name == "memit") return EditMode::Memit;
  fail(ErrorCode::InvalidArgument, "unknown mode '" + name + "' (expected comeba-hk, comeba-wo-hk or memit)");
}

Scope parse_scope(const std::string& name) {
  if (name == "paper") return Scope::Paper;
  if (name == "calibrated") return Scope::Calibrated;
  if (name == "carried") return Scope::Carried;
  if (name == "studentized") return Scope::Studentized;
  fail(ErrorCode::InvalidArgument, "unknown scope '" + name + "' (expected paper, calibrated, carried or studentized)");
}

const char* scope_name(Scope scope) {
  switch (scope) {
    case Scope::Paper: return "paper";
    case Scope::Calibrated: return "calibrated";
    case Scope::Carried: return "carried";
    case Scope::Studentized: return "studentized";
  }
  return "paper";
}

ReEdit parse_reedit(const std::string& name) {
  if (name == "none") return ReEdit::None;
  if (name == "retarget") return ReEdit::Retarget;
  fail(ErrorCode::InvalidArgument, "unknown re-edit rule '" + name + "' (expected none or retarget)");
}

const char* edit_mode_name(EditMode mode) {
  switch (mode) {
    case EditMode::ComebaHk: return "comeba-hk";
    case EditMode::ComebaWithoutHooks: return "comeba-wo-hk";
    case EditMode::Memit: return "memit";
  }
  return "comeba-hk";
}

Editor::Editor(std::shared_ptr<const CausalLM> model, EditorOptions options, std::vector<torch::Tensor> second_moments)
    : model_(std::move(model)), options_(std::move(options)) {
  const auto& info = model_->info();
  if (options_.layers.empty()) fail(ErrorCode::InvalidArgument, "layers must name at least one layer");
  for (size_t i = 0; i < options_.layers.size(); ++i) {
    const int64_t l = options_.layers[i];
    if (l < 0 || l >= info.n_layer)
      fail(ErrorCode::InvalidArgument, "layer " + std::to_string(l) + " does not exist (the model has " + std::to_string(info.n_layer) + ")");
    if (i > 0 && l <= options_.layers[i - 1]) fail(ErrorCode::InvalidArgument, "layers must be strictly increasing");
  }
  if (!(options_.lambda > 0)) fail(ErrorCode::InvalidArgument, "lambda must be positive");
  if (options_.scope != Scope::Paper && options_.mode != EditMode::ComebaHk)
    fail(ErrorCode::InvalidArgument, std::string("the ") + scope_name(options_.scope) +
                                         " scope needs validated hooks: use it with mode comeba-hk");
  if (!(options_.scope_kappa >= 0 && std::isfinite(options_.scope_kappa)) ||
      !(options_.alpha_floor >= 0 && options_.alpha_floor <= options_.alpha_z))
    fail(ErrorCode::InvalidArgument, "scopeKappa must be a number ≥ 0 and alphaFloor a number in [0, alphaZ]");
  if (options_.reedit == ReEdit::Retarget && options_.mode == EditMode::Memit)
    fail(ErrorCode::InvalidArgument, "the retarget rule acts on C_accu's earlier keys: use it with comeba-hk or comeba-wo-hk, not memit");
  if (!(options_.reedit_threshold >= 0 && options_.reedit_threshold < 1))
    fail(ErrorCode::InvalidArgument, "reeditThreshold must be a number in [0, 1)");
  if (second_moments.size() != options_.layers.size())
    fail(ErrorCode::InvalidArgument, "one second-moment matrix per edited layer is needed");
  for (size_t i = 0; i < second_moments.size(); ++i) {
    const auto& m = second_moments[i];
    if (m.dim() != 2 || m.size(0) != info.d_ff || m.size(1) != info.d_ff)
      fail(ErrorCode::InvalidArgument, "statistics for layer " + std::to_string(options_.layers[i]) + " must be " +
                                           std::to_string(info.d_ff) + " × " + std::to_string(info.d_ff));
    if (!torch::isfinite(m).all().item<bool>())
      fail(ErrorCode::InvalidArgument, "statistics for layer " + std::to_string(options_.layers[i]) + " contain NaN or Inf");
    auto prior = options_.lambda * m.to(torch::kCPU, torch::kFloat64);
    prior_.push_back(options_.mode == EditMode::Memit ? prior.to(accumulator_device()) : prior);
    if (options_.reedit == ReEdit::Retarget) {
      double jitter = 0;  // a β added here only shapes the cosines that weigh earlier keys, never the solve
      whitener_.push_back(cholesky_factor(m.to(torch::kCPU, torch::kFloat64), &jitter, "E[kkᵀ] of layer " + std::to_string(options_.layers[i])));
    }
  }
  keep_factors_ = model_->device().is_cpu() && (options_.mode == EditMode::Memit || options_.accumulator_dtype == torch::kFloat64);
  factors_.resize(options_.layers.size());
  state_ = initial_state();
}

std::vector<LayerState> Editor::initial_state() const {
  const auto& info = model_->info();
  std::vector<LayerState> state;
  for (size_t i = 0; i < options_.layers.size(); ++i) {
    LayerState s;
    s.layer = options_.layers[i];
    s.delta = torch::zeros({info.d_model, info.d_ff}, torch::TensorOptions().dtype(torch::kFloat32).device(model_->device()));
    // memit keeps C fixed at λ·E[kkᵀ] and never accumulates: no copy needed.
    if (options_.mode != EditMode::Memit) s.c_accu = initial_c_accu(i);
    s.alpha = options_.alpha_z;
    if (options_.reedit == ReEdit::Retarget) {
      s.history = torch::zeros({info.d_ff, 0}, torch::kFloat64);
      s.history_norms = torch::zeros({0}, torch::kFloat64);
    }
    state.push_back(std::move(s));
  }
  return state;
}

torch::Tensor Editor::initial_c_accu(size_t i) const {
  return place_accumulator(prior_.at(i).to(accumulator_device(), options_.accumulator_dtype, /*non_blocking=*/false, /*copy=*/true));
}

torch::Device Editor::accumulator_device() const {
  return options_.accumulator_on_host ? torch::Device(torch::kCPU) : model_->device();
}

torch::Tensor Editor::place_accumulator(const torch::Tensor& c) const {
  auto placed = c.to(accumulator_device(), options_.accumulator_dtype);
  if (placed.is_cpu() && model_->device().is_cuda() && !placed.is_pinned()) placed = placed.pin_memory();
  return placed;
}

void Editor::hold_keys_after(int64_t step) {
  std::lock_guard edit_lock(edit_mutex_);
  std::unique_lock lock(state_mutex_);
  if (step > step_) fail(ErrorCode::InvalidArgument, "cannot hold keys after step " + std::to_string(step) + ": the editor is at " + std::to_string(step_));
  if (!hold_keys_ || step < held_after_) {
    if (step != step_) fail(ErrorCode::InvalidArgument, "the keys of the batches after step " + std::to_string(step) + " are not held");
    held_.clear();
  }
  held_.erase(std::remove_if(held_.begin(), held_.end(), [&](const CommittedKeys& k) { return k.step <= step; }), held_.end());
  hold_keys_ = true;
  held_after_ = step;
}

void Editor::stop_holding_keys() {
  std::lock_guard edit_lock(edit_mutex_);
  std::unique_lock lock(state_mutex_);
  hold_keys_ = false;
  held_.clear();
  held_after_ = step_;
}

Checkpoint Editor::checkpoint_after(int64_t step) {
  // A loaded editor factorises the C_accu it reads; this one drops its updated factors here, so that both go on
  // from the same factor and edit on identically to the bit (a resumed sweep equals an uninterrupted one).
  std::lock_guard edit_lock(edit_mutex_);
  std::unique_lock lock(state_mutex_);
  if (options_.mode != EditMode::Memit)
    for (auto& f : factors_) f = SpdFactor();
  if (step > step_ || (step < step_ && (!hold_keys_ || step < held_after_)))
    fail(ErrorCode::InvalidArgument, "the keys of the batches after step " + std::to_string(step) + " are not held (the editor is at step " +
                                         std::to_string(step_) + ")");
  Checkpoint c{state_, step_, {}};
  for (const auto& k : held_)
    if (k.step > step) c.keys.push_back(k);
  return c;
}

int64_t Editor::step() const {
  std::shared_lock lock(state_mutex_);
  return step_;
}

std::vector<LayerState> Editor::state() const {
  std::shared_lock lock(state_mutex_);
  return state_;
}

std::vector<HookLayer> Editor::hook_layers(HookMode mode) const {
  std::shared_lock lock(state_mutex_);
  std::vector<HookLayer> layers;
  const bool carried = options_.scope == Scope::Carried, studentized = options_.scope == Scope::Studentized;
  for (const auto& s : state_)
    layers.push_back({s.layer, mode, s.delta, s.alpha, s.floor, carried && !layers.empty(), studentized});
  return layers;
}

std::pair<torch::Tensor, torch::Tensor> Editor::retargeted_keys(size_t i, const LayerState& s, const torch::Tensor& keys) const {
  // Whitened cosines c_sj = k_sᵀE⁻¹k_j / √(k_sᵀE⁻¹k_s · k_jᵀE⁻¹k_j) (E = E[kkᵀ]): distinct subjects are near 0 there
  // (Hu et al. 2025), one subject's keys in other prompts near 1 (the testbed: ≥ 0.89; other people ≤ 0.57).
  auto K = keys.to(torch::kCPU, torch::kFloat64);                                // (F, n)
  auto Y = torch::cholesky_solve(K, whitener_.at(i));                            // E⁻¹K (F, n)
  auto norms = (K * Y).sum(0);                                                   // (n)
  if (s.history.size(1) == 0) return {torch::zeros_like(K), norms};
  auto c = s.history.t().mm(Y) / torch::sqrt(s.history_norms.unsqueeze(1) * norms.unsqueeze(0)).clamp_min(1e-300);  // (N, n)
  const double tau = options_.reedit_threshold;
  auto w = ((c - tau) / (1 - tau)).clamp(0, 1);                                  // (N, n)
  return {s.history.mm(w), norms};                                               // K_hist W (F, n)
}

double Editor::scope_floor(size_t i, const torch::Tensor& delta) const {
  if (options_.scope != Scope::Calibrated) return 0;
  // prior_ is λ·E[kkᵀ] on the CPU (comeba-hk): ρ² = tr(ΔW E ΔWᵀ) in float64
  auto d = delta.to(torch::kCPU, torch::kFloat64);                                // (C, F)
  const double mean_sq = (d.mm(prior_[i]) * d).sum().item<double>() / options_.lambda;
  return options_.scope_kappa * std::sqrt(std::max(mean_sq, 0.0));
}

std::unique_ptr<EditHooks> Editor::inference_hooks() const {
  return std::make_unique<EditHooks>(
      hook_layers(options_.mode == EditMode::ComebaHk ? HookMode::Validated : HookMode::Temporary));
}

void Editor::check_representable(int64_t layer, const torch::Tensor& keys, const torch::Tensor& delta) const {
  // In half precision the hook adds ΔW k to the module's output in the model's dtype: an update below that
  // output's resolution would leave the model unchanged while the editor counts the batch.
  const auto dtype = model_->dtype();
  if (dtype == torch::kFloat32) return;
  torch::NoGradGuard no_grad;
  auto k = keys.t().to(model_->device(), torch::kFloat32);                       // (n, F)
  auto d = torch::matmul(k, delta.to(model_->device(), torch::kFloat32).t());    // (n, C): ΔW_batch k
  if (!d.abs().gt(0).any().item<bool>()) return;                                 // nothing to apply
  auto out = model_->edited_module(layer)(k.to(dtype));                          // (n, C) in the model's dtype
  if (torch::equal(out + d.to(dtype), out))
    fail(ErrorCode::NumericalFailure, "the update of layer " + std::to_string(layer) + " is below the resolution of the model's " +
                                          c10::toString(dtype) + " outputs and would change nothing; load the model in float32 "
                                          "(or bfloat16 for float16) to edit it");
}

EditReport Editor::edit(const std::vector<EditRequest>& requests, const EditControl& control) {
  std::lock_guard edit_lock(edit_mutex_);
  validate_requests(*model_, requests);
  const auto start = Clock::now();
  auto check_abort = [&] {
    if (control.aborted && control.aborted()) fail(ErrorCode::Aborted, "the edit was aborted; the editor is unchanged");
  };
  auto progress = [&](const std::string& phase, double done) {
    if (control.progress) control.progress(phase, done);
  };
  const bool hooked = options_.mode == EditMode::ComebaHk;
  const int64_t L = static_cast<int64_t>(options_.layers.size());
  const int64_t z_layer = options_.layers.back();
  EditReport report;

  // 1. Values z under the current edited model.
  auto t = Clock::now();
  progress("values", 0);
  auto work = hook_layers(hooked ? HookMode::Validated : HookMode::Temporary);
  report.values = compute_values(*model_, work, z_layer, requests, options_.values, check_abort);
  report.seconds_values = seconds_since(t);
  const auto& z = report.values.z;                                            // (n, C)

  // 2. Every layer to a temporary hook; then the layers in increasing order.
  for (auto& w : work) w.mode = HookMode::Temporary;
  std::vector<torch::Tensor> batch_keys(L);                                    // (F, n) per layer, for the commit
  std::vector<torch::Tensor> batch_norms(L);                                   // (n) kᵀE⁻¹k per layer, with Retarget
  const auto state = this->state();
  t = Clock::now();
  auto keys_batch = key_batch(*model_, options_.layers.front(), requests);
  report.seconds_keys += seconds_since(t);
  for (int64_t i = 0; i < L; ++i) {
    check_abort();
    if (i == control.fail_after_layer) fail(ErrorCode::Internal, "injected failure after " + std::to_string(i) + " layer(s)");
    progress("layer " + std::to_string(options_.layers[i]), static_cast<double>(i) / L);
    t = Clock::now();
    auto [keys, cur_z] = keys_and_outputs(*model_, keys_batch, work, options_.layers[i], z_layer);
    report.seconds_keys += seconds_since(t);

    t = Clock::now();
    auto K = keys.t().contiguous();                                           // (F, n)
    auto residual = z - cur_z;                                                // (n, C)
    auto R = (residual / static_cast<double>(L - i)).t();                     // (C, n)
    // To the device in the stored dtype first (a pinned copy from the host), then widened there.
    auto C = (options_.mode == EditMode::Memit ? prior_[i] : state[i].c_accu).to(model_->device()).to(torch::kFloat64);
    auto rhs = K;
    if (options_.reedit == ReEdit::Retarget) {
      auto [shift, norms] = retargeted_keys(i, state[i], K);
      rhs = K + shift.to(K.device());                                         // K + K_hist W
      batch_norms[i] = norms;
    }
    CholeskySolve solved;
    if (keep_factors_) {
      if (!factors_[i].defined()) factors_[i] = factor_spd(C, "C_accu of layer " + std::to_string(options_.layers[i]));
      solved = {solve_with_factor(factors_[i], K, rhs), factors_[i].jitter};  // X (F, n), as below without O(F³)
    } else {
      solved = solve_spd(torch::addmm(C, K, K.t()), rhs);                     // X (F, n)
    }
    auto delta = R.mm(solved.x.t());                                          // (C, F), eq. 13 (Retarget: R rhsᵀ A⁻¹)
    if (!torch::isfinite(delta).all().item<bool>())
      fail(ErrorCode::NumericalFailure, "the update of layer " + std::to_string(options_.layers[i]) + " contains NaN or Inf");
    check_representable(options_.layers[i], K, delta);
    work[i].delta = work[i].delta + delta.to(torch::kFloat32);
    if (hooked) work[i].mode = HookMode::Validated;                            // with the old α
    batch_keys[i] = K;
    report.seconds_solves += seconds_since(t);

    LayerReport lr;
    lr.layer = options_.layers[i];
    lr.residual_before = residual.norm().item<double>();
    lr.alpha_before = lr.alpha_after = state[i].alpha;
    lr.jitter = solved.jitter;
    if (control.capture) { lr.keys = K; lr.residual = R; lr.delta = delta; }
    if (i > 0) report.layers.back().residual_after = lr.residual_before;
    report.layers.push_back(std::move(lr));
  }
  // 3. α update (eq. 19): the batch's prompts through hooks that only measure.
  if (hooked) {
    check_abort();
    progress("alpha", 0);
    t = Clock::now();
    auto measure = work;
    for (auto& m : measure) m.mode = HookMode::Measure;
    EditHooks hooks(measure);
    hooks.stop_after(z_layer);
    TokenRows prompts;
    for (const auto& r : requests) prompts.push_back(r.contexts[0]);
    {
      torch::NoGradGuard no_grad;
      model_->forward(TokenBatch::pack(prompts, false, 0, model_->device()), &hooks, nullptr);
    }
    for (const auto& [layer, max_z] : hooks.measured()) {
      auto finite = max_z.masked_select(torch::isfinite(max_z));
      if (finite.numel() == 0) continue;  // no prompt long enough to have a z-score
      const double candidate = finite.min().item<double>() * (1 - kAlphaRoundingMargin);  // > 0 (or +inf)
      for (size_t i = 0; i < work.size(); ++i)
        if (work[i].layer == layer) {
          work[i].alpha = std::max(options_.alpha_floor, std::min(work[i].alpha, candidate));
          report.layers[i].alpha_after = work[i].alpha;
        }
    }
    report.seconds_alpha = seconds_since(t);
  }
  // z as the edited model gives it once this batch is committed: under validated hooks, at the α eq. 19 just set
  // (at the old α, a prompt whose z-scores only the update brings within reach would read as unchanged), from a
  // whole forward (the residual kept in keys_batch predates α's move, which can change the lower layers' decisions).
  t = Clock::now();
  report.layers.back().residual_after = (z - outputs_at_bare(*model_, keys_batch, work, z_layer)).norm().item<double>();
  report.seconds_keys += seconds_since(t);
  progress("done", 1);
  if (control.before_commit) control.before_commit();
  check_abort();

  // 4. Commit. Nothing above touched the editor's state.
  std::vector<double> floors;
  for (int64_t i = 0; i < L; ++i) floors.push_back(scope_floor(i, work[i].delta));
  // The grown key history is built before the lock: nothing under it allocates more than C_accu's update.
  std::vector<torch::Tensor> histories(L), history_norms(L);
  if (options_.reedit == ReEdit::Retarget)
    for (int64_t i = 0; i < L; ++i) {
      histories[i] = torch::cat({state[i].history, batch_keys[i].to(torch::kCPU)}, 1);
      history_norms[i] = torch::cat({state[i].history_norms, batch_norms[i]});
    }
  {
    std::unique_lock lock(state_mutex_);
    for (int64_t i = 0; i < L; ++i) {
      state_[i].delta = work[i].delta;
      state_[i].alpha = work[i].alpha;
      state_[i].floor = floors[i];
      if (options_.mode != EditMode::Memit)
      {
        auto k = batch_keys[i].to(state_[i].c_accu.device(), state_[i].c_accu.scalar_type());
        state_[i].c_accu.addmm_(k, k.t());
      }
      if (options_.reedit == ReEdit::Retarget) {
        state_[i].history = histories[i];
        state_[i].history_norms = history_norms[i];
      }
    }
    report.step = ++step_;
    if (hold_keys_) {
      CommittedKeys held{step_, {}, {}};
      if (options_.mode != EditMode::Memit)
        for (const auto& k : batch_keys) held.keys.push_back(k.to(torch::kCPU));
      if (options_.reedit == ReEdit::Retarget) held.norms = batch_norms;
      held_.push_back(std::move(held));
    }
  }
  // The kept factors follow C_accu (outside the state lock: only edits, which hold edit_mutex_, read them).
  if (options_.mode != EditMode::Memit) {
    t = Clock::now();
    for (int64_t i = 0; i < L; ++i)
      if (factors_[i].defined()) update_factor(factors_[i], batch_keys[i]);
    report.seconds_solves += seconds_since(t);
  }
  report.seconds_total = seconds_since(start);
  return report;
}

void Editor::restore(std::vector<LayerState> state, int64_t step) {
  const auto& info = model_->info();
  if (state.size() != options_.layers.size()) fail(ErrorCode::InvalidArgument, "the state has the wrong number of layers");
  for (size_t i = 0; i < state.size(); ++i) {
    auto& s = state[i];
    if (s.layer != options_.layers[i]) fail(ErrorCode::InvalidArgument, "the state's layers differ from the editor's");
    if (s.delta.sizes() != torch::IntArrayRef{info.d_model, info.d_ff})
      fail(ErrorCode::InvalidArgument, "ΔW of layer " + std::to_string(s.layer) + " has the wrong shape");
    s.delta = s.delta.to(model_->device(), torch::kFloat32);
    if (options_.mode != EditMode::Memit) {
      if (!s.c_accu.defined() || s.c_accu.sizes() != torch::IntArrayRef{info.d_ff, info.d_ff})
        fail(ErrorCode::InvalidArgument, "C_accu of layer " + std::to_string(s.layer) + " is missing or has the wrong shape");
      s.c_accu = place_accumulator(s.c_accu);
    }
    if (options_.reedit == ReEdit::Retarget) {
      if (!s.history.defined() || !s.history_norms.defined() || s.history.dim() != 2 || s.history.size(0) != info.d_ff ||
          s.history_norms.dim() != 1 || s.history_norms.size(0) != s.history.size(1))
        fail(ErrorCode::InvalidArgument, "the key history of layer " + std::to_string(s.layer) + " (the retarget rule's) is missing or has the wrong shape");
      s.history = s.history.to(torch::kCPU, torch::kFloat64).contiguous();
      s.history_norms = s.history_norms.to(torch::kCPU, torch::kFloat64).contiguous();
    } else {
      s.history = s.history_norms = torch::Tensor();
    }
    s.floor = scope_floor(i, s.delta);
  }
  std::lock_guard edit_lock(edit_mutex_);
  std::unique_lock lock(state_mutex_);
  state_ = std::move(state);
  for (auto& f : factors_) f = SpdFactor();
  step_ = step;
  hold_keys_ = false;
  held_.clear();
  held_after_ = step;
}

void Editor::reset() {
  auto fresh = initial_state();
  std::lock_guard edit_lock(edit_mutex_);
  std::unique_lock lock(state_mutex_);
  state_ = std::move(fresh);
  for (auto& f : factors_) f = SpdFactor();
  step_ = 0;
  hold_keys_ = false;
  held_.clear();
  held_after_ = 0;
}

}  // namespace comeba
