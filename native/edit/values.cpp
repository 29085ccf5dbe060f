#include "edit/values.h"

#include <optional>

#include "common/device.h"
#include "common/error.h"
#include "models/inference.h"

namespace comeba {
namespace {

// The padded batch of one optimisation step: per request its rewriting rows (context + prompt + target
// without its last token), then one KL row per request.
struct ValueBatch {
  TokenBatch tokens;
  TokenSites lookup;            // subject-last position of every row
  torch::Tensor row_request;    // (N) which request each row belongs to
  torch::Tensor target_rows, target_cols, target_ids;  // one entry per target token
  std::vector<int64_t> rows_per_request;
  TokenSites init_sites;        // subject-last of each request's first (bare) row: z_init
  int64_t n_rewrite_rows = 0;
};

ValueBatch build_batch(const CausalLM& model, const std::vector<EditRequest>& requests) {
  ValueBatch vb;
  TokenRows rows;
  std::vector<int64_t> look_rows, look_cols, row_req, t_rows, t_cols, t_ids, init_rows, init_cols;
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto& req = requests[r];
    // A rewriting row: the prompt (with the subject at `subject_last`) and its target but the last token.
    auto add_row = [&](std::vector<int64_t> row, int64_t subject_last, const std::vector<int64_t>& target) {
      const int64_t prompt_len = static_cast<int64_t>(row.size());
      row.insert(row.end(), target.begin(), target.end() - 1);
      const int64_t index = static_cast<int64_t>(rows.size());
      look_rows.push_back(index);
      look_cols.push_back(subject_last);
      row_req.push_back(static_cast<int64_t>(r));
      for (size_t t = 0; t < target.size(); ++t) {
        t_rows.push_back(index);
        t_cols.push_back(prompt_len - 1 + static_cast<int64_t>(t));  // the logit that predicts target[t]
        t_ids.push_back(target[t]);
      }
      rows.push_back(std::move(row));
      return index;
    };
    for (size_t j = 0; j < req.contexts.size(); ++j) {
      const int64_t index = add_row(req.contexts[j], req.subject_last[j], req.target);
      if (j == 0) { init_rows.push_back(index); init_cols.push_back(req.subject_last[0]); }
    }
    for (const auto& kept : req.keep) add_row(kept.row, kept.subject_last, kept.target);  // the retarget rule's
    vb.rows_per_request.push_back(static_cast<int64_t>(req.contexts.size() + req.keep.size()));
  }
  vb.n_rewrite_rows = static_cast<int64_t>(rows.size());
  for (size_t r = 0; r < requests.size(); ++r) {
    look_rows.push_back(static_cast<int64_t>(rows.size()));
    look_cols.push_back(requests[r].kl_subject_last);
    row_req.push_back(static_cast<int64_t>(r));
    rows.push_back(requests[r].kl_row);
  }
  const auto dev = model.device();
  auto ints = [&](const std::vector<int64_t>& v) { return device_ints(v, dev); };
  vb.tokens = TokenBatch::pack(rows, /*left_pad=*/false, 0, dev);
  vb.lookup = {ints(look_rows), ints(look_cols)};
  vb.row_request = ints(row_req);
  vb.target_rows = ints(t_rows);
  vb.target_cols = ints(t_cols);
  vb.target_ids = ints(t_ids);
  vb.init_sites = {ints(init_rows), ints(init_cols)};
  return vb;
}

// The rows `rows` of a padded batch (lengths and offsets are not needed past the embedding).
TokenBatch select_rows(const TokenBatch& batch, const torch::Tensor& rows) {
  TokenBatch sub;
  sub.ids = batch.ids.index_select(0, rows);
  sub.real = batch.real.index_select(0, rows);
  sub.positions = batch.positions.index_select(0, rows);
  return sub;
}

KvCache select_rows(const KvCache& cache, const torch::Tensor& rows) {
  KvCache sub;
  for (const auto& k : cache.keys) sub.keys.push_back(k.defined() ? k.index_select(0, rows) : k);
  for (const auto& v : cache.values) sub.values.push_back(v.defined() ? v.index_select(0, rows) : v);
  sub.real = cache.real.index_select(0, rows);
  sub.next_position = cache.next_position.index_select(0, rows);
  return sub;
}

// What a step runs above the z-layer. Whole rows (the reference path): `prefix` empty, `cols` the identity.
// Split rows: each row from its subject-last token s on (`batch`, right-padded, at the rows' own positions),
// with the keys and values of positions < s in the blocks above the z-layer computed once (`prefix`).
struct StepInput {
  TokenBatch batch;       // (N, T') rows as the blocks above the z-layer see them
  torch::Tensor h;        // (N, T', C) the z-block output at those positions, without δ
  torch::Tensor start;    // (N) the full-row column of each row's first position here (s, or 0)
  std::optional<KvCache> prefix;
};

StepInput whole_rows(const ValueBatch& vb, const torch::Tensor& h_z) {
  return {vb.tokens, h_z, torch::zeros_like(vb.lookup.cols), std::nullopt};
}

StepInput split_rows(const CausalLM& model, const ValueBatch& vb, const torch::Tensor& h_z, int64_t z_layer) {
  torch::NoGradGuard no_grad;
  const auto dev = h_z.device();
  const int64_t N = h_z.size(0), T = h_z.size(1);
  const auto start = vb.lookup.cols;                                                           // (N)
  const auto lengths = vb.tokens.real.sum(1);                                                  // (N), right-padded rows
  const int64_t P = start.max().item<int64_t>();
  const int64_t Ts = (lengths - start).max().item<int64_t>();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(dev);
  StepInput in;
  in.start = start;
  // Suffix columns of each row, right-padded (padding repeats the last column, masked out).
  auto t = torch::arange(Ts, i64).unsqueeze(0);                                                // (1, Ts)
  auto cols = (start.unsqueeze(1) + t).clamp_max(T - 1);                                       // (N, Ts)
  in.batch.ids = vb.tokens.ids.gather(1, cols);
  in.batch.real = t < (lengths - start).unsqueeze(1);
  in.batch.positions = vb.tokens.positions.gather(1, cols);
  in.h = h_z.gather(1, cols.unsqueeze(-1).expand({N, Ts, h_z.size(2)}));                      // (N, Ts, C)
  if (P > 0) {
    TokenBatch prefix;
    auto p = torch::arange(P, i64).unsqueeze(0);                                               // (1, P)
    prefix.ids = vb.tokens.ids.narrow(1, 0, P);
    prefix.real = p < start.unsqueeze(1);
    prefix.positions = vb.tokens.positions.narrow(1, 0, P);
    KvCache cache;
    model.blocks_from(z_layer + 1, h_z.narrow(1, 0, P), prefix, nullptr, &cache);
    in.prefix = std::move(cache);
  }
  return in;
}

}  // namespace

ValueResult compute_values(const CausalLM& model, const std::vector<HookLayer>& state, int64_t z_layer,
                           const std::vector<EditRequest>& requests, const ValueOptions& options,
                           const std::function<void()>& check_abort) {
  const int64_t n = static_cast<int64_t>(requests.size());
  const auto vb = build_batch(model, requests);
  const auto dev = model.device();
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(dev);
  const int64_t N = vb.tokens.ids.size(0);

  // Nothing up to the z-block depends on δ: run it once, under the current hooks, and start every step
  // from its output. z_init is that output at each request's bare prompt.
  torch::Tensor h_z;  // (N, T, C)
  {
    torch::NoGradGuard no_grad;
    EditHooks hooks(state);
    hooks.keep_block_output(z_layer);
    hooks.stop_after(z_layer);
    model.forward(vb.tokens, &hooks, nullptr);
    h_z = hooks.kept_block_output();
  }
  const auto z_init = h_z.index({vb.init_sites.rows, vb.init_sites.cols}).to(torch::kFloat32);  // (n, C)
  const auto max_norm = options.clamp_norm_factor * z_init.norm(2, 1);  // (n)
  const auto init_norm_sq = z_init.norm(2, 1).pow(2);                   // (n)
  const auto is_kl_row = torch::arange(N, i64) >= vb.n_rewrite_rows;    // (N)
  const auto rows_per_request = torch::tensor(vb.rows_per_request, torch::kFloat32).to(dev);  // (n)
  const auto in = options.reuse_prefix ? split_rows(model, vb, h_z, z_layer) : whole_rows(vb, h_z);
  // Columns in `in`: the subject-last token, and every target position.
  const auto look_in = vb.lookup.cols - in.start;                                                  // (N)
  const auto target_cols_in = vb.target_cols - in.start.index_select(0, vb.target_rows);           // (M)

  auto delta = torch::zeros({n, model.info().d_model}, f32).requires_grad_(true);
  torch::optim::Adam adam({delta}, torch::optim::AdamOptions(options.lr));
  torch::Tensor kl_init;  // (n, V): log-probabilities before any step
  auto done = torch::zeros({n}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  // A float16 model's gradients underflow to zero below 6e-8, and δ then never moves (the edit would be a
  // no-op): the loss is scaled before the backward pass and the gradient unscaled after it; an overflow
  // halves the scale and repeats the step. Adam's step is invariant to the scale up to its ε.
  double loss_scale = model.dtype() == torch::kFloat16 ? 65536.0 : 1.0;
  ValueResult result;
  result.steps.assign(n, 0);
  result.final_loss.assign(n, 0);

  for (int64_t step = 0; step < options.steps; ++step) {
    check_abort();
    // Only the rows of requests still optimising take part.
    const auto rows = (~done).index_select(0, vb.row_request).nonzero().squeeze(1);                  // (A)
    const auto local = torch::arange(rows.size(0), i64);
    const auto owner = vb.row_request.index_select(0, rows);                                         // (A)
    const auto look = look_in.index_select(0, rows);                                                 // (A)
    auto h = in.h.index_select(0, rows);                                                             // (A, T', C)
    h = h.index_put({local, look}, h.index({local, look}) + delta.index_select(0, owner).to(h.scalar_type()));
    std::optional<KvCache> prefix;  // a copy: the step's suffix keys are appended to it, not to in.prefix
    if (in.prefix) prefix = rows.size(0) == N ? *in.prefix : select_rows(*in.prefix, rows);
    auto out = model.blocks_from(z_layer + 1, h, select_rows(in.batch, rows), nullptr, prefix ? &*prefix : nullptr);  // (A, T', C)

    // NLL of the target tokens: mean over a prompt's target tokens, then mean over the request's prompts.
    auto to_local = torch::full({N}, -1, i64).index_put_({rows}, local);
    auto t_row = to_local.index_select(0, vb.target_rows);
    auto kept = (t_row >= 0).nonzero().squeeze(1);
    t_row = t_row.index_select(0, kept);
    // The head only where a loss reads it: the target positions and the KL positions.
    auto logp = torch::log_softmax(model.head(out.index({t_row, target_cols_in.index_select(0, kept)})).to(torch::kFloat32), -1)
                    .gather(1, vb.target_ids.index_select(0, kept).unsqueeze(1)).squeeze(1);      // (M)
    auto per_row = torch::zeros({rows.size(0)}, f32);
    auto row_nll = per_row.index_add(0, t_row, -logp) / per_row.index_add(0, t_row, torch::ones_like(logp)).clamp_min(1);
    auto rewrite = (~is_kl_row.index_select(0, rows)).to(torch::kFloat32);
    auto nll = torch::zeros({n}, f32).index_add(0, owner, row_nll * rewrite) / rows_per_request;      // (n)

    // KL term at the subject of "{subject} is a", as MEMIT's kl_div(init, current, log_target=True).
    auto kl_local = is_kl_row.index_select(0, rows).nonzero().squeeze(1);
    auto kl_logp = torch::log_softmax(model.head(out.index({kl_local, look.index_select(0, kl_local)})).to(torch::kFloat32), -1);
    auto kl_owner = owner.index_select(0, kl_local);
    if (!kl_init.defined()) kl_init = torch::zeros({n, kl_logp.size(1)}, f32).index_copy(0, kl_owner, kl_logp.detach());
    auto kl = torch::zeros({n}, f32).index_add(0, kl_owner, (kl_logp.exp() * (kl_logp - kl_init.index_select(0, kl_owner))).sum(1));

    auto decay = options.weight_decay * delta.norm(2, 1) / init_norm_sq;          // (n)
    auto loss = nll + options.kl_factor * kl + decay;                             // (n); meaningful where active
    auto active = ~done;
    if (!torch::isfinite(loss.masked_select(active)).all().item<bool>())
      fail(ErrorCode::NumericalFailure, "the value optimisation produced a NaN or Inf loss at step " + std::to_string(step));

    auto loss_cpu = loss.detach().to(torch::kCPU, torch::kFloat64);
    auto active_cpu = active.to(torch::kCPU);
    for (int64_t r = 0; r < n; ++r)
      if (active_cpu[r].item<bool>()) result.final_loss[r] = loss_cpu[r].item<double>();
    if (step == 0) result.first_loss = result.final_loss;
    done = done | (active & (loss.detach() < options.early_stop_loss));
    if (done.all().item<bool>() || step == options.steps - 1) break;

    adam.zero_grad();
    // δ rows are independent: the sum gives each its own gradient.
    ((loss * (~done).to(torch::kFloat32)).sum() * loss_scale).backward();
    if (loss_scale != 1.0) {
      auto grad = delta.mutable_grad();
      if (!torch::isfinite(grad).all().item<bool>()) {
        loss_scale /= 2;
        if (loss_scale < 1) fail(ErrorCode::NumericalFailure, "the value optimisation's gradient overflows float16 even unscaled");
        --step;  // the same step again, with half the scale
        continue;
      }
      grad.div_(loss_scale);
    }
    auto frozen = delta.detach().clone();
    adam.step();
    {
      torch::NoGradGuard no_grad;
      delta.copy_(torch::where(done.unsqueeze(1), frozen, delta));                // finished requests stay put
      auto norms = delta.norm(2, 1);
      auto scale = torch::where(norms > max_norm, max_norm / norms, torch::ones_like(norms));
      delta.mul_(scale.unsqueeze(1));                                             // ‖δ‖ ≤ clamp · ‖z_init‖
    }
    auto still = (~done).to(torch::kCPU);
    for (int64_t r = 0; r < n; ++r) result.steps[r] += still[r].item<bool>() ? 1 : 0;
  }
  result.z = (z_init + delta.detach()).to(torch::kFloat64);
  return result;
}

}  // namespace comeba
