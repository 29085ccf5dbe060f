#include "hooks/edit_hooks.h"

#include <limits>

namespace comeba {

torch::Tensor masked_zscores(const torch::Tensor& m, const torch::Tensor& real, bool studentized) {
  auto mf = m.to(torch::kFloat64);
  auto w = real.to(torch::kFloat64);                                  // (B, T)
  auto n = w.sum(1, /*keepdim=*/true);                                // (B, 1)
  auto mean = (mf * w).sum(1, true) / n.clamp_min(1);
  auto d = (mf - mean) * w;                                           // (B, T) deviations, 0 at padding
  auto ss = d.pow(2).sum(1, true);                                    // (B, 1)
  const auto none = -std::numeric_limits<double>::infinity();
  if (!studentized) {
    auto std = (ss / (n - 1).clamp_min(1)).sqrt();
    auto defined = (n >= 2) & (std > 0) & real;                      // (B, T)
    return torch::where(defined, d / std, none);
  }
  // Against the other tokens: m_t − mean₋ₜ = d_t·n/(n−1), SS₋ₜ = SS − d_t²·n/(n−1) (Shiffler 1988: the paper's z
  // cannot exceed (n−1)/√n, below α = 2.2 for n ≤ 6; this one is unbounded).
  auto scale = n / (n - 1).clamp_min(1);
  auto ss_other = (ss - d.pow(2) * scale).clamp_min(0);
  auto std_other = (ss_other / (n - 2).clamp_min(1)).sqrt();
  auto lift = d * scale;
  const auto inf = std::numeric_limits<double>::infinity();
  auto z = torch::where(std_other > 0, lift / std_other, torch::where(lift > 0, torch::full_like(lift, inf), torch::full_like(lift, none)));
  auto defined = (n >= 3) & (ss > 0) & real;
  return torch::where(defined, z, none);
}

HookLayer* EditHooks::find(int64_t layer) {
  for (auto& l : layers_)
    if (l.layer == layer) return &l;
  return nullptr;
}

torch::Tensor EditHooks::edited_module(int64_t layer, const torch::Tensor& x, const Linear& module,
                                       const ForwardContext& ctx) {
  if (input_capture_ && input_capture_->layer == layer)
    input_capture_->value = x.index({input_capture_->sites.rows, input_capture_->sites.cols});  // (N, F)
  auto p = module(x);                                                 // (B, T, C): W0 x + b
  HookLayer* hl = find(layer);
  if (!hl || hl->mode == HookMode::Off) return p;
  auto d = torch::matmul(x.to(torch::kFloat32), hl->delta.t());       // (B, T, C): ΔW x
  if (hl->mode == HookMode::Temporary) return p + d.to(p.scalar_type());
  auto m = d.norm(2, -1).to(torch::kFloat64);                         // (B, T)
  if (hl->mode == HookMode::Measure) {
    measured_.emplace_back(layer, std::get<0>(masked_zscores(m, ctx.real, hl->studentized).max(1)));  // (B)
    return p;
  }
  torch::Tensor swap;                                                  // (B, T)
  if (!track_) {
    swap = carried((masked_zscores(m, ctx.real, hl->studentized) >= hl->alpha) & (m >= hl->floor), *hl);
  } else {
    auto& h = history_[layer];
    const int64_t past = h.m.defined() ? h.m.size(1) : 0;
    auto m_all = past ? torch::cat({h.m, m}, 1) : m;                   // (B, S)
    auto real_all = past ? torch::cat({h.real, ctx.real}, 1) : ctx.real;
    auto swap_all = carried((masked_zscores(m_all, real_all, hl->studentized) >= hl->alpha) & (m_all >= hl->floor), *hl);
    if (past && !torch::equal(swap_all.narrow(1, 0, past), h.swap)) stale_ = true;
    swap = swap_all.narrow(1, past, m.size(1));
    h = {m_all, real_all, swap_all};
  }
  return torch::where(swap.unsqueeze(-1), p + d.to(p.scalar_type()), p);
}

torch::Tensor EditHooks::carried(torch::Tensor swap, const HookLayer& hl) {
  if (hl.carry && carried_.defined()) swap = swap | carried_;
  carried_ = swap;
  return swap;
}

torch::Tensor EditHooks::block_output(int64_t layer, const torch::Tensor& h, const ForwardContext&) {
  if (kept_ && kept_->layer == layer) {
    kept_->value = h;
    kept_carried_ = carried_;
  }
  if (output_capture_ && output_capture_->layer == layer)
    output_capture_->value = h.index({output_capture_->sites.rows, output_capture_->sites.cols});  // (N, C)
  return h;
}

}  // namespace comeba
