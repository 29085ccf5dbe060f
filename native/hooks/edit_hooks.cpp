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
    swap = swap_all.narrow(1, past, m.size(1));
    if (past && settled_) {
      swap_all = torch::cat({h.swap, swap}, 1);                        // earlier decisions stand
    } else if (past) {
      auto flipped = swap_all.narrow(1, 0, past) != h.swap;             // (B, past)
      if (flipped.any().item<bool>()) {
        // first flipped column per row (argmax returns the first maximum), −1 where none
        auto first = torch::where(flipped.any(1), flipped.to(torch::kInt64).argmax(1), torch::full({flipped.size(0)}, -1, torch::kInt64).to(flipped.device()));
        stale_from_ = !stale_ ? first : torch::where((stale_from_ < 0) | ((first >= 0) & (first < stale_from_)), first, stale_from_);
        stale_ = true;
      }
    }
    h = {m_all, real_all, swap_all};
  }
  return torch::where(swap.unsqueeze(-1), p + d.to(p.scalar_type()), p);
}

void EditHooks::narrow_sequence(const torch::Tensor& rows, int64_t from) {
  whole_ = history_;
  narrowed_rows_ = rows;
  for (auto& [layer, h] : history_) {
    auto keep = [&](const torch::Tensor& t) { return t.index_select(0, rows).narrow(1, 0, from); };
    h = {keep(h.m), keep(h.real), keep(h.swap)};
  }
  stale_ = false;
  stale_from_ = torch::Tensor();
}

void EditHooks::merge_sequence() {
  // The narrowed rows now hold as many columns as the others (they were recomputed up to the same end).
  for (auto& [layer, w] : whole_) {
    const auto& h = history_.at(layer);
    w.m.index_copy_(0, narrowed_rows_, h.m);
    w.real.index_copy_(0, narrowed_rows_, h.real);
    w.swap.index_copy_(0, narrowed_rows_, h.swap);
  }
  if (stale_) {  // columns of the narrowed rows' own numbering are the whole batch's; rows map back
    auto all = torch::full({whole_.begin()->second.m.size(0)}, -1, torch::kInt64).to(stale_from_.device());
    stale_from_ = all.index_copy(0, narrowed_rows_, stale_from_);
  }
  history_ = std::move(whole_);
  whole_.clear();
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
  if (layer == stop_after_) stopped_ = h;
  return h;
}

}  // namespace comeba
