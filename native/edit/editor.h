// The consecutive batch editor (paper §3, METHOD.md §4). Per edited layer it keeps ΔW = W_h − W0,
// C_accu and α; W0 is never touched. A batch is computed entirely on copies and committed at the end
// under an exclusive lock, so a batch that fails for any reason leaves the editor exactly as it was.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "edit/request.h"
#include "edit/solve.h"
#include "edit/values.h"
#include "hooks/edit_hooks.h"

namespace comeba {

enum class EditMode { ComebaHk, ComebaWithoutHooks, Memit };

EditMode parse_edit_mode(const std::string& name);
const char* edit_mode_name(EditMode mode);

// Which tokens a validated hook edits (comeba-hk only; docs/method.md "Editing scope").
//   Paper:      the z-score of ‖ΔW x_t‖ over the sequence reaches α (eq. 16–19).
//   Calibrated: that, and ‖ΔW x_t‖ ≥ κ·ρ with ρ² = tr(ΔW E[kkᵀ] ΔWᵀ), the mean of ‖ΔW k‖² over the
//               statistics corpus' keys; eq. 19 never takes α below `alpha_floor`.
//   Carried:    the paper's test, and a token swapped at one edited layer is swapped at every edited layer above
//               it in the same forward (the test is noisier in the upper layers: docs/method.md "Editing scope").
//   Studentized: eq. 16–19 with each token's z taken against the sequence's other tokens, so that a short prompt's
//               subject can reach α (the paper's z is at most (n−1)/√n: 2.04 for 6 tokens).
enum class Scope { Paper, Calibrated, Carried, Studentized };

Scope parse_scope(const std::string& name);
const char* scope_name(Scope scope);

// What a new edit does to the preservation constraints of earlier edits whose keys it meets (docs/method.md "Re-edits").
//   None:     the paper: every earlier key keeps its output (C_accu holds them all).
//   Retarget: an earlier key k_s with whitened cosine c_sj ≥ τ to a new key k_j moves with it: its target
//             becomes its current output plus w_sj·r_j, w_sj = (c_sj − τ)/(1 − τ); the update is then
//             ΔW = R (K + K_hist W)ᵀ (C_accu + KKᵀ)⁻¹. C_accu accumulates as in the paper.
enum class ReEdit { None, Retarget };

ReEdit parse_reedit(const std::string& name);

// Defaults live in lib/edit/options.ts (METHOD.md §7's table); the binding requires every field.
struct EditorOptions {
  EditMode mode = EditMode::ComebaHk;
  std::vector<int64_t> layers;  // increasing; z lives at the output of the last one
  double lambda = 0;
  double alpha_z = 0;
  Scope scope = Scope::Paper;
  double scope_kappa = 0;   // κ of the calibrated scope
  double alpha_floor = 0;   // least α of the calibrated scope
  ValueOptions values;
  torch::Dtype accumulator_dtype = torch::kFloat64;  // storage of C_accu
  // C_accu (and memit's fixed C) in host memory: each solve copies one layer's to the model's device, so the
  // device holds one F × F matrix at a time instead of one per edited layer (docs/library.md "Memory").
  bool accumulator_on_host = false;
  ReEdit reedit = ReEdit::None;
  double reedit_threshold = 0;  // τ of Retarget, in [0, 1)
};

struct EditControl {
  std::function<bool()> aborted;                                      // polled between steps
  std::function<void(const std::string& phase, double done)> progress;  // may be empty
  // Called once before the commit, after the last progress event: lets the caller wait until every event
  // was handled, so that a handler's failure (which aborts) still leaves the editor unchanged. May be empty.
  std::function<void()> before_commit;
  int64_t fail_after_layer = -1;  // testing: throw after this many layers were updated
  bool capture = false;           // keep K, R and ΔW_batch per layer in the report
};

struct LayerReport {
  int64_t layer = 0;
  double residual_before = 0, residual_after = 0;  // ‖Z − cur_z‖ (Frobenius) before and after this layer's update
  double alpha_before = 0, alpha_after = 0;
  double jitter = 0;
  torch::Tensor keys, residual, delta;  // only with capture: K (F, n), R (C, n), ΔW_batch (C, F), float64
};

struct EditReport {
  std::vector<LayerReport> layers;
  ValueResult values;
  double seconds_values = 0, seconds_keys = 0, seconds_solves = 0, seconds_alpha = 0, seconds_total = 0;
  int64_t step = 0;  // the editor's batch count after this one
};

// The keys K (F, n) float64 on the CPU of one committed batch, per layer: C_accu is λ·E[kkᵀ] plus Σ K Kᵀ over
// the batches, so an incremental checkpoint stores these instead of C_accu (F² per layer).
struct CommittedKeys {
  int64_t step = 0;                  // the editor's step after this batch
  std::vector<torch::Tensor> keys;   // per edited layer; empty for memit (its C never changes)
  std::vector<torch::Tensor> norms;  // per edited layer with Retarget: kᵀE[kkᵀ]⁻¹k of each key (n) float64
};

struct LayerState {
  int64_t layer = 0;
  torch::Tensor delta;   // (C, F) float32
  torch::Tensor c_accu;  // (F, F) accumulator dtype; λ·E[kkᵀ] plus every committed K Kᵀ
  double alpha = 0;
  double floor = 0;      // the calibrated scope's κ·ρ, derived from delta (not saved)
  // With Retarget: every committed key (F, N) float64 on the CPU, and kᵀE[kkᵀ]⁻¹k of each (N).
  torch::Tensor history, history_norms;
};

// A consistent view for a checkpoint: the state, its step, and the held keys of the batches after a step.
struct Checkpoint {
  std::vector<LayerState> state;
  int64_t step = 0;
  std::vector<CommittedKeys> keys;
};

class Editor {
 public:
  // `second_moments` are E[kkᵀ] (F, F) of the edited layers, in `options.layers` order.
  Editor(std::shared_ptr<const CausalLM> model, EditorOptions options, std::vector<torch::Tensor> second_moments);

  EditReport edit(const std::vector<EditRequest>& requests, const EditControl& control);

  // Hooks that make a forward see the edited model (validated hooks, or in-place edits for the ablations).
  std::unique_ptr<EditHooks> inference_hooks() const;

  const EditorOptions& options() const { return options_; }
  const CausalLM& model() const { return *model_; }
  int64_t step() const;
  std::vector<LayerState> state() const;
  // Replaces the whole state (after load); shapes are checked first, so a bad state changes nothing.
  void restore(std::vector<LayerState> state, int64_t step);
  void reset();

  // Incremental checkpoints. After hold_keys_after(s) (s = the current step, or a step whose later batches
  // are held), every committed batch's keys are kept until a later call forgets them; stop_holding_keys()
  // drops them all (reset, or no incremental target any more).
  void hold_keys_after(int64_t step);
  void stop_holding_keys();
  // The state, its step and the held keys of every batch after `step`; fails unless they are all held.
  // Waits for a running edit.
  Checkpoint checkpoint_after(int64_t step);
  // C_accu of edited layer i as create() starts it: λ·E[kkᵀ] in the accumulator dtype on the model's device.
  torch::Tensor initial_c_accu(size_t i) const;
  // Where C_accu lives: the model's device, or the CPU with accumulator_on_host.
  torch::Device accumulator_device() const;
  // `c` in the accumulator dtype where C_accu lives (pinned host memory for a CUDA model, for faster copies).
  torch::Tensor place_accumulator(const torch::Tensor& c) const;

 private:
  std::vector<HookLayer> hook_layers(HookMode mode) const;
  std::vector<LayerState> initial_state() const;
  // Fails when adding ΔW_batch k (C, F) to the module's outputs at the batch's keys K (F, n) changes
  // nothing in the model's dtype (a half-precision model, an update below its resolution).
  void check_representable(int64_t layer, const torch::Tensor& keys, const torch::Tensor& delta) const;
  // Retarget: K_hist W (F, n), the earlier keys each new key moves with it, and the new keys' kᵀE⁻¹k (n).
  std::pair<torch::Tensor, torch::Tensor> retargeted_keys(size_t i, const LayerState& s, const torch::Tensor& keys) const;
  // κ·ρ of layer i for ΔW = delta under the calibrated scope, else 0.
  double scope_floor(size_t i, const torch::Tensor& delta) const;

  std::shared_ptr<const CausalLM> model_;
  EditorOptions options_;
  // λ·E[kkᵀ] (F, F) float64 per layer: memit's fixed C (on the model's device unless accumulator_on_host), or
  // where C_accu starts after reset() (kept on the CPU: it is read only then, and GPU memory goes to C_accu).
  std::vector<torch::Tensor> prior_;
  // With Retarget: the lower Cholesky factor of E[kkᵀ] (F, F) float64 on the CPU per layer, for whitened cosines.
  std::vector<torch::Tensor> whitener_;
  std::vector<LayerState> state_;
  // Per layer, the Cholesky factor of C_accu (memit: of λ·E[kkᵀ]) kept between batches where the solves run on the
  // CPU in float64 (edit/solve.h); undefined until the next edit needs it, so restore() and reset() just drop them.
  // Used under edit_mutex_ only.
  bool keep_factors_ = false;
  std::vector<SpdFactor> factors_;
  int64_t step_ = 0;
  bool hold_keys_ = false;
  int64_t held_after_ = 0;              // held_ covers every batch after this step
  std::vector<CommittedKeys> held_;
  mutable std::shared_mutex state_mutex_;  // readers: inference; writer: commit, restore, reset
  std::mutex edit_mutex_;                  // one batch at a time
};

}  // namespace comeba
