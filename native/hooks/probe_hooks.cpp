#include "hooks/probe_hooks.h"

#include "common/device.h"
#include "common/error.h"

namespace comeba {
namespace {

[[noreturn]] void bad_spec(size_t index, const std::string& point, const std::string& what) {
  fail(ErrorCode::InvalidArgument, "hook " + std::to_string(index) + " ('" + point + "'): " + what);
}

}  // namespace

ProbeHooks::ProbeHooks(const CausalLM& model, std::vector<ProbeSpec> specs, const TokenBatch& batch,
                       ForwardHooks* inner)
    : inner_(inner) {
  const auto& info = model.info();
  for (size_t i = 0; i < specs.size(); ++i) {
    const HookPoint point = model.parse_hook_point(specs[i].point);
    Bound b{std::move(specs[i]), point, {}, {}, {}};
    const auto& spec = b.spec;
    const bool at_module = b.point.site == HookSite::EditedModule;
    switch (spec.action) {
      case ProbeSpec::Action::RecordInput:
        if (!at_module) bad_spec(i, spec.point, "a block output has no input to record; record 'output' of the previous block");
        break;
      case ProbeSpec::Action::Add:
        if (spec.tensor.dim() != 1 || spec.tensor.size(0) != info.d_model)
          bad_spec(i, spec.point, "the added vector must have d_model = " + std::to_string(info.d_model) + " entries");
        b.spec.tensor = spec.tensor.to(model.device(), model.dtype());
        break;
      case ProbeSpec::Action::ReplaceWeight: {
        if (!at_module) bad_spec(i, spec.point, "only the edited linear module's weight can be replaced");
        if (inner) bad_spec(i, spec.point, "cannot replace a weight while an editor's hooks are attached to the model");
        const auto& own = model.edited_module(b.point.layer).weight;
        if (spec.tensor.sizes() != own.sizes())
          bad_spec(i, spec.point, "the weight must have the module's shape [" + std::to_string(own.size(0)) + ", " +
                                      std::to_string(own.size(1)) + "]");
        b.spec.tensor = spec.tensor.to(model.device(), model.dtype());
        break;
      }
      case ProbeSpec::Action::RecordOutput: break;
    }
    if (spec.action != ProbeSpec::Action::ReplaceWeight) {
      if (spec.positions.size() != batch.lengths.size())
        bad_spec(i, spec.point, "positions must list one array per batch row (" + std::to_string(batch.lengths.size()) + ")");
      std::vector<int64_t> rows, cols;
      for (size_t r = 0; r < spec.positions.size(); ++r) {
        for (int64_t p : spec.positions[r]) {
          if (p < 0 || p >= batch.lengths[r])
            bad_spec(i, spec.point, "position " + std::to_string(p) + " is outside row " + std::to_string(r) +
                                        " (" + std::to_string(batch.lengths[r]) + " tokens)");
          rows.push_back(static_cast<int64_t>(r));
          cols.push_back(batch.offsets[r] + p);
        }
      }
      b.rows = device_ints(rows, model.device());
      b.cols = device_ints(cols, model.device());
    }
    bound_.push_back(std::move(b));
  }
}

torch::Tensor ProbeHooks::apply(HookSite site, int64_t layer, const torch::Tensor& x, torch::Tensor y) {
  for (auto& b : bound_) {
    if (b.point.site != site || b.point.layer != layer) continue;
    switch (b.spec.action) {
      case ProbeSpec::Action::RecordInput:
        b.recorded = x.index({b.rows, b.cols}).detach().to(torch::kCPU, torch::kFloat32);  // (N, F)
        break;
      case ProbeSpec::Action::RecordOutput:
        b.recorded = y.index({b.rows, b.cols}).detach().to(torch::kCPU, torch::kFloat32);  // (N, C)
        break;
      case ProbeSpec::Action::Add:
        y = y.index_put({b.rows, b.cols}, y.index({b.rows, b.cols}) + b.spec.tensor);
        break;
      case ProbeSpec::Action::ReplaceWeight: break;  // handled before the others, in edited_module
    }
  }
  return y;
}

torch::Tensor ProbeHooks::edited_module(int64_t layer, const torch::Tensor& x, const Linear& module,
                                        const ForwardContext& ctx) {
  torch::Tensor y;
  for (const auto& b : bound_)
    if (b.point.site == HookSite::EditedModule && b.point.layer == layer && b.spec.action == ProbeSpec::Action::ReplaceWeight)
      y = module.with_weight(x, b.spec.tensor);
  if (!y.defined()) y = inner_ ? inner_->edited_module(layer, x, module, ctx) : module(x);
  return apply(HookSite::EditedModule, layer, x, y);
}

torch::Tensor ProbeHooks::block_output(int64_t layer, const torch::Tensor& h, const ForwardContext& ctx) {
  auto out = inner_ ? inner_->block_output(layer, h, ctx) : h;
  return apply(HookSite::BlockOutput, layer, out, out);
}

std::vector<torch::Tensor> ProbeHooks::records() const {
  std::vector<torch::Tensor> out;
  for (const auto& b : bound_) out.push_back(b.recorded);
  return out;
}

}  // namespace comeba
