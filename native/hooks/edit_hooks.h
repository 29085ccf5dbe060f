// The hook layers of COMEBA-HK (paper §3.1.2–3.1.3, METHOD.md §4–5) on the edited MLP projections.
//   Temporary: output := W_h x + b at every token (also how `memit` / `comeba-wo-hk` edit "in place").
//   Validated: output := W_h x + b only where the z-score of ‖ΔW x_t‖ over the sequence's real tokens
//              reaches α and ‖ΔW x_t‖ itself reaches `floor` (0 in the paper's scope); elsewhere W0 x + b.
//              A layer with `carry` also swaps wherever the validated layer below it swapped in the same forward
//              (the carried scope: a token is judged once, at the lowest edited layer that finds it, then edited above).
//   Measure:   output := W0 x + b, recording each sequence's largest z-score (for the α update).
// W_h = W0 + ΔW is never materialised: only ΔW (C, F) is kept, O − P = ΔW x.
// The same object also carries the editor's probes: captured activations and where the forward may stop.
#pragma once

#include <map>
#include <optional>
#include <vector>

#include "hooks/hooks.h"

namespace comeba {

enum class HookMode { Off, Temporary, Validated, Measure };

struct HookLayer {
  int64_t layer = 0;
  HookMode mode = HookMode::Off;
  torch::Tensor delta;    // (C, F) float32: ΔW = W_h − W0
  double alpha = 0;
  double floor = 0;       // least ‖ΔW x_t‖ a validated hook swaps at (the calibrated scope; 0: the paper's)
  bool carry = false;     // also swap where the validated layer below swapped (the carried scope)
  bool studentized = false;  // z of each token against the sequence's other tokens (the studentized scope)
};

// Row/position pairs of a padded batch at which to capture.
struct TokenSites {
  torch::Tensor rows, cols;  // (N) int64 each, on the model's device
};

// z-scores of m (B, T) over the real positions of each row (unbiased std); `studentized`: each token's z against
// the row's other real tokens (leave-one-out mean and std). Rows with fewer than two real tokens (three when
// studentized) or no spread get −inf everywhere, so nothing in them ever counts as an outlier.
torch::Tensor masked_zscores(const torch::Tensor& m, const torch::Tensor& real, bool studentized);

class EditHooks final : public ForwardHooks {
 public:
  explicit EditHooks(std::vector<HookLayer> layers) : layers_(std::move(layers)) {}

  HookLayer* find(int64_t layer);
  std::vector<HookLayer>& layers() { return layers_; }

  void capture_input(int64_t layer, TokenSites sites) { input_capture_ = Capture{layer, std::move(sites), {}}; }
  void capture_block_output(int64_t layer, TokenSites sites) { output_capture_ = Capture{layer, std::move(sites), {}}; }
  void stop_after(int64_t layer) { stop_after_ = layer; }
  // Keep the whole residual stream after block `layer` (B, T, C).
  void keep_block_output(int64_t layer) { kept_ = Capture{layer, {}, {}}; }
  torch::Tensor kept_block_output() const { return kept_ ? kept_->value : torch::Tensor(); }
  // The residual stream (B, T, C) after the block a forward stopped at (stop_after).
  torch::Tensor stopped_output() const { return stopped_; }
  // The carried scope's swap mask (B, T) as it stood when the kept block output was taken, and the mask a forward
  // that starts above the first validated layer begins with (so that it decides as the whole forward would).
  torch::Tensor kept_carried() const { return kept_carried_; }
  void start_carried(torch::Tensor swap) { carried_ = std::move(swap); }

  torch::Tensor captured_input() const { return input_capture_ ? input_capture_->value : torch::Tensor(); }
  torch::Tensor captured_block_output() const { return output_capture_ ? output_capture_->value : torch::Tensor(); }
  // Per Measure layer, in layer order: each row's largest z-score (B), −inf where undefined.
  const std::vector<std::pair<int64_t, torch::Tensor>>& measured() const { return measured_; }

  torch::Tensor edited_module(int64_t layer, const torch::Tensor& x, const Linear& module,
                              const ForwardContext& ctx) override;
  torch::Tensor block_output(int64_t layer, const torch::Tensor& h, const ForwardContext& ctx) override;
  int64_t last_layer() const override { return stop_after_; }

  // Keep each sequence's ‖ΔW x‖ history across calls that extend a KV cache, so that z-scores cover the
  // whole sequence, and report when an earlier position's swap decision flips. `settled`: a position's decision
  // is taken once, when it enters the sequence, from its z-score over the sequence so far, and never revisited
  // (so nothing is ever stale).
  void track_sequence(bool settled = false) {
    track_ = true;
    settled_ = settled;
  }
  bool cache_stale() const override { return stale_; }
  torch::Tensor stale_from() const override { return stale_from_; }
  void narrow_sequence(const torch::Tensor& rows, int64_t from) override;
  void merge_sequence() override;
  void reset_sequence() override {
    history_.clear();
    whole_.clear();
    stale_ = false;
    stale_from_ = torch::Tensor();
  }

 private:
  struct Capture {
    int64_t layer;
    TokenSites sites;
    torch::Tensor value;
  };

  // The swap decision of a validated layer under the carried scope (or as given), remembered for the layers above.
  torch::Tensor carried(torch::Tensor swap, const HookLayer& hl);

  std::vector<HookLayer> layers_;
  std::optional<Capture> input_capture_, output_capture_, kept_;
  torch::Tensor carried_, kept_carried_;  // the last validated layer's swap mask in this forward (B, T or S)
  torch::Tensor stopped_;
  int64_t stop_after_ = -1;
  std::vector<std::pair<int64_t, torch::Tensor>> measured_;

  struct History {
    torch::Tensor m, real, swap;  // (B, S) of the positions already in the cache
  };
  bool track_ = false, settled_ = false;
  bool stale_ = false;
  torch::Tensor stale_from_;        // (B) int64: first column whose decision flipped, −1 where none
  std::map<int64_t, History> history_;
  std::map<int64_t, History> whole_;  // every row's history while `history_` holds some rows' (narrow_sequence)
  torch::Tensor narrowed_rows_;       // (R) int64: those rows
};

}  // namespace comeba
