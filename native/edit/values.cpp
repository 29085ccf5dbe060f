#include "edit/values.h"

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
  torch::Tensor target_rows, target_cols, target_ids, target_request;  // one entry per target token
  std::vector<int64_t> rows_per_request;
  TokenSites init_sites;        // subject-last of each request's first (bare) row: z_init
  int64_t n_rewrite_rows = 0;
};

ValueBatch build_batch(const CausalLM& model, const std::vector<EditRequest>& requests) {
  ValueBatch vb;
  TokenRows rows;
  std::vector<int64_t> look_rows, look_cols, row_req, t_rows, t_cols, t_ids, t_req, init_rows, init_cols;
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto& req = requests[r];
    for (size_t j = 0; j < req.contexts.size(); ++j) {
      auto row = req.contexts[j];
      const int64_t prompt_len = static_cast<int64_t>(row.size());
      row.insert(row.end(), req.target.begin(), req.target.end() - 1);
      const int64_t index = static_cast<int64_t>(rows.size());
      if (j == 0) { init_rows.push_back(index); init_cols.push_back(req.subject_last[0]); }
      look_rows.push_back(index);
      look_cols.push_back(req.subject_last[j]);
      row_req.push_back(static_cast<int64_t>(r));
      for (size_t t = 0; t < req.target.size(); ++t) {
        t_rows.push_back(index);
        t_cols.push_back(prompt_len - 1 + static_cast<int64_t>(t));  // the logit that predicts target[t]
        t_ids.push_back(req.target[t]);
        t_req.push_back(static_cast<int64_t>(r));
      }
      rows.push_back(std::move(row));
    }
    vb.rows_per_request.push_back(static_cast<int64_t>(req.contexts.size()));
  }
  vb.n_rewrite_rows = static_cast<int64_t>(rows.size());
  for (size_t r = 0; r < requests.size(); ++r) {
    look_rows.push_back(static_cast<int64_t>(rows.size()));
    look_cols.push_back(requests[r].kl_subject_last);
    row_req.push_back(static_cast<int64_t>(r));
    rows.push_back(requests[r].kl_row);
  }
  const auto dev = model.device();
  auto ints = [&](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kInt64).to(dev); };
  vb.tokens = TokenBatch::pack(rows, /*left_pad=*/false, 0, dev);
  vb.lookup = {ints(look_rows), ints(look_cols)};
  vb.row_request = ints(row_req);
  vb.target_rows = ints(t_rows);
  vb.target_cols = ints(t_cols);
  vb.target_ids = ints(t_ids);
  vb.target_request = ints(t_req);
  vb.init_sites = {ints(init_rows), ints(init_cols)};
  return vb;
}

}  // namespace

ValueResult compute_values(const CausalLM& model, const std::vector<HookLayer>& state, int64_t z_layer,
                           const std::vector<EditRequest>& requests, const ValueOptions& options,
                           const std::function<void()>& check_abort) {
  EditHooks hooks(state);
  const int64_t n = static_cast<int64_t>(requests.size());
  const auto vb = build_batch(model, requests);
  const auto dev = model.device();
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  const int64_t n_kl = n;
  auto kl_rows = torch::arange(vb.n_rewrite_rows, vb.n_rewrite_rows + n_kl, torch::TensorOptions().dtype(torch::kInt64).device(dev));

  // z_init: the z-block output at each request's bare prompt, before any δ.
  torch::Tensor z_init;
  {
    torch::NoGradGuard no_grad;
    hooks.capture_block_output(z_layer, vb.init_sites);
    hooks.stop_after(z_layer);
    model.forward(vb.tokens, &hooks, nullptr);
    z_init = hooks.captured_block_output().to(torch::kFloat32);     // (n, C)
    hooks.stop_after(-1);
  }
  auto max_norm = options.clamp_norm_factor * z_init.norm(2, 1);      // (n)
  auto init_norm_sq = z_init.norm(2, 1).pow(2);                       // (n)

  auto delta = torch::zeros({n, model.info().d_model}, f32).requires_grad_(true);
  torch::optim::Adam adam({delta}, torch::optim::AdamOptions(options.lr));
  torch::Tensor kl_init;  // (n, V) log-probabilities before any step
  auto done = torch::zeros({n}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  ValueResult result;
  result.steps.assign(n, 0);
  const auto row_counts = torch::tensor(vb.rows_per_request, torch::kFloat64).to(dev);

  for (int64_t step = 0; step < options.steps; ++step) {
    check_abort();
    hooks.inject(z_layer, vb.lookup, delta.index_select(0, vb.row_request));
    auto logits = model.forward(vb.tokens, &hooks, nullptr);                      // (N, T, V)

    // NLL of the target tokens: mean over a prompt's target tokens, then mean over the request's prompts.
    auto target_logp = torch::log_softmax(logits.index({vb.target_rows, vb.target_cols}).to(torch::kFloat32), -1)
                           .gather(1, vb.target_ids.unsqueeze(1)).squeeze(1);     // (M)
    auto tokens_per_row = torch::zeros({vb.n_rewrite_rows}, f32).index_add_(0, vb.target_rows, torch::ones_like(target_logp));
    auto row_nll = torch::zeros({vb.n_rewrite_rows}, f32).index_add_(0, vb.target_rows, -target_logp) / tokens_per_row;
    auto nll = torch::zeros({n}, f32).index_add_(0, vb.row_request.narrow(0, 0, vb.n_rewrite_rows), row_nll) /
               row_counts.to(torch::kFloat32);                                    // (n)

    // KL term at the subject of "{subject} is a", as MEMIT's kl_div(init, current, log_target=True).
    auto kl_logp = torch::log_softmax(logits.index({kl_rows, vb.lookup.cols.narrow(0, vb.n_rewrite_rows, n_kl)})
                                          .to(torch::kFloat32), -1);              // (n, V)
    if (!kl_init.defined()) kl_init = kl_logp.detach();
    auto kl = (kl_logp.exp() * (kl_logp - kl_init)).sum(1);                       // (n)

    auto decay = options.weight_decay * delta.norm(2, 1) / init_norm_sq;          // (n)
    auto loss = nll + options.kl_factor * kl + decay;                             // (n)
    if (!torch::isfinite(loss).all().item<bool>())
      fail(ErrorCode::NumericalFailure, "the value optimisation produced a NaN or Inf loss at step " + std::to_string(step));

    auto loss_cpu = loss.detach().to(torch::kCPU, torch::kFloat64);
    if (step == 0) result.first_loss.assign(loss_cpu.data_ptr<double>(), loss_cpu.data_ptr<double>() + n);
    result.final_loss.assign(loss_cpu.data_ptr<double>(), loss_cpu.data_ptr<double>() + n);
    done = done | (loss.detach() < options.early_stop_loss);
    if (done.all().item<bool>() || step == options.steps - 1) break;

    adam.zero_grad();
    (loss * (~done).to(torch::kFloat32)).sum().backward();  // δ rows are independent: the sum gives each its own gradient
    auto frozen = delta.detach().clone();
    adam.step();
    {
      torch::NoGradGuard no_grad;
      auto keep = done.unsqueeze(1);
      delta.copy_(torch::where(keep, frozen, delta));                             // finished requests stay put
      auto norms = delta.norm(2, 1);
      auto scale = torch::where(norms > max_norm, max_norm / norms, torch::ones_like(norms));
      delta.mul_(scale.unsqueeze(1));                                             // ‖δ‖ ≤ clamp · ‖z_init‖
    }
    auto active = (~done).to(torch::kCPU);
    for (int64_t r = 0; r < n; ++r) result.steps[r] += active[r].item<bool>() ? 1 : 0;
  }
  result.z = (z_init + delta.detach()).to(torch::kFloat64);
  return result;
}

}  // namespace comeba
