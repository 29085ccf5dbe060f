// The hook primitives offered to users (and used by tests): record a module's input or output at chosen
// token positions, add a vector to an output at chosen positions, or replace the edited linear module's
// output by W'x + b. Positions count real tokens of each row, whatever the padding.
#pragma once

#include <string>
#include <vector>

#include "models/causal_lm.h"

namespace comeba {

struct ProbeSpec {
  enum class Action { RecordInput, RecordOutput, Add, ReplaceWeight };
  std::string point;                            // HF name, e.g. "transformer.h.3.mlp.c_proj"
  Action action = Action::RecordOutput;
  std::vector<std::vector<int64_t>> positions;  // per batch row (record / add)
  torch::Tensor tensor;                         // vector (add, C) or weight in the module's layout (replace)
};

class ProbeHooks final : public ForwardHooks {
 public:
  // Validates every spec against the model and the batch; throws InvalidArgument naming the bad one.
  // `inner` (may be null: the plain model) computes the outputs the probes observe, e.g. an editor's hooks.
  ProbeHooks(const CausalLM& model, std::vector<ProbeSpec> specs, const TokenBatch& batch, ForwardHooks* inner);

  torch::Tensor edited_module(int64_t layer, const torch::Tensor& x, const Linear& module,
                              const ForwardContext& ctx) override;
  torch::Tensor block_output(int64_t layer, const torch::Tensor& h, const ForwardContext& ctx) override;

  // Per spec, in order: the recorded rows (N, dim) in float32 on the CPU; undefined for non-recording specs.
  std::vector<torch::Tensor> records() const;

 private:
  struct Bound {
    ProbeSpec spec;
    HookPoint point;
    torch::Tensor rows, cols;  // flattened (batch row, padded position) pairs for gather/scatter
    torch::Tensor recorded;
  };

  // Applies the record/add specs of one point, in order, to a module's input x and output y.
  torch::Tensor apply(HookSite site, int64_t layer, const torch::Tensor& x, torch::Tensor y);

  std::vector<Bound> bound_;
  ForwardHooks* inner_;
};

}  // namespace comeba
