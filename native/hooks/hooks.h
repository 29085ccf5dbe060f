// Hook points of a forward pass. Models call these at the edited MLP projection and after every block;
// the editor's hooks and the probe hooks exposed to JS implement them. No JS runs per token.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace comeba {

// A linear module as stored in the checkpoint: Conv1D keeps HF's [in, out] layout (y = xW + b),
// nn.Linear keeps [out, in] (y = xWᵀ + b). Bias may be undefined.
struct Linear {
  torch::Tensor weight;
  torch::Tensor bias;
  bool conv1d = false;
  // Weight and bias all zero (a pruned module, like the testbed's upper MLPs): the output is zero whatever x,
  // so no matmul runs (forward or backward); h + 0 is bit-identical to the full computation.
  bool zero = false;

  // Sets `zero` from the weights; call once after loading.
  Linear& detect_zero() {
    zero = !weight.any().item<bool>() && !(bias.defined() && bias.any().item<bool>());
    return *this;
  }
  torch::Tensor operator()(const torch::Tensor& x) const {
    if (!zero) return with_weight(x, weight);
    auto shape = x.sizes().vec();
    shape.back() = conv1d ? weight.size(1) : weight.size(0);
    return torch::zeros(shape, x.options());
  }
  // The module's output with another weight of the same layout in place of its own.
  torch::Tensor with_weight(const torch::Tensor& x, const torch::Tensor& w) const {
    auto y = torch::matmul(x, conv1d ? w : w.t());
    return bias.defined() ? y + bias : y;
  }
};

enum class HookSite { EditedModule, BlockOutput };

struct HookPoint {
  int64_t layer = 0;
  HookSite site = HookSite::BlockOutput;
};

// What a hook sees besides the tensor: which positions are real tokens, for the tokens of this call.
struct ForwardContext {
  const torch::Tensor& real;  // (B, T) bool
};

class ForwardHooks {
 public:
  virtual ~ForwardHooks() = default;
  // Output of the edited projection at `layer` for its input x (B, T, F); default: the module itself.
  virtual torch::Tensor edited_module(int64_t layer, const torch::Tensor& x, const Linear& module,
                                      const ForwardContext& ctx) {
    (void)layer; (void)ctx;
    return module(x);
  }
  // May observe or replace the residual stream h (B, T, C) after block `layer`.
  virtual torch::Tensor block_output(int64_t layer, const torch::Tensor& h, const ForwardContext& ctx) {
    (void)layer; (void)ctx;
    return h;
  }
  // The last block whose output is needed; the forward stops there and returns no logits. -1: run all.
  virtual int64_t last_layer() const { return -1; }

  // Incremental decoding. Hooks whose decisions depend on the whole sequence (the validated hook's z-score)
  // say here when a new token changed a decision at an earlier position: the KV cache is then stale from
  // that position on. `stale_from` gives, per row (B), the first column whose decision changed (−1: none).
  // The caller recomputes those rows from there: `narrow_sequence` keeps only those rows' history before
  // that column, and `merge_sequence` puts their recomputed history back among the others'.
  // `reset_sequence` forgets the sequence seen so far.
  virtual bool cache_stale() const { return false; }
  virtual torch::Tensor stale_from() const { return {}; }
  virtual void narrow_sequence(const torch::Tensor& rows, int64_t from) { (void)rows; (void)from; }
  virtual void merge_sequence() {}
  virtual void reset_sequence() {}
};

}  // namespace comeba
