#include "stats/covariance.h"

#include <algorithm>
#include <stdexcept>

#include "common/error.h"
#include "io/json.h"
#include "io/safetensors.h"

namespace comeba {
namespace {

// Adds the real tokens' inputs of the edited modules into the sums, and stops after the last one.
class MomentHooks final : public ForwardHooks {
 public:
  MomentHooks(const std::vector<int64_t>& layers, std::vector<torch::Tensor>& sums, torch::Dtype products)
      : layers_(layers), sums_(sums), products_(products) {}

  torch::Tensor edited_module(int64_t layer, const torch::Tensor& x, const Linear& module,
                              const ForwardContext& ctx) override {
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (layers_[i] != layer) continue;
      auto k = x.index({ctx.real}).to(products_);                // (N, F)
      if (products_ == sums_[i].scalar_type())
        sums_[i].addmm_(k.t(), k);
      else
        sums_[i].add_(torch::mm(k.t(), k));  // one batch's products in float32, summed across batches in float64
    }
    return module(x);
  }
  int64_t last_layer() const override { return layers_.back(); }

 private:
  const std::vector<int64_t>& layers_;
  std::vector<torch::Tensor>& sums_;
  torch::Dtype products_;
};

}  // namespace

SecondMomentAccumulator::SecondMomentAccumulator(std::vector<int64_t> layers, const ModelInfo& info, torch::Dtype dtype,
                                                 torch::Device device, torch::Dtype products)
    : layers_(std::move(layers)), products_(products) {
  if (layers_.empty()) fail(ErrorCode::InvalidArgument, "statistics need at least one layer");
  // Sorted: the forward stops after the last one (MomentHooks::last_layer).
  std::sort(layers_.begin(), layers_.end());
  if (std::adjacent_find(layers_.begin(), layers_.end()) != layers_.end())
    fail(ErrorCode::InvalidArgument, "statistics layers must not repeat");
  for (int64_t l : layers_)
    if (l < 0 || l >= info.n_layer)
      fail(ErrorCode::InvalidArgument, "layer " + std::to_string(l) + " is outside 0…" + std::to_string(info.n_layer - 1));
  const int64_t d_ff = info.d_ff;
  if (dtype != torch::kFloat32 && dtype != torch::kFloat64)
    fail(ErrorCode::InvalidArgument, "statistics accumulate in float32 or float64");
  if (products != torch::kFloat32 && products != torch::kFloat64)
    fail(ErrorCode::InvalidArgument, "statistics take products in float32 or float64");
  for (size_t i = 0; i < layers_.size(); ++i) {
    sums_.push_back(torch::zeros({d_ff, d_ff}, torch::TensorOptions().dtype(dtype).device(device)));
  }
}

void SecondMomentAccumulator::add(const CausalLM& model, const TokenRows& rows) {
  validate_tokens(model, rows);
  c10::InferenceMode inference;
  MomentHooks hooks(layers_, sums_, products_);
  const auto batch = TokenBatch::pack(rows, false, 0, model.device());
  model.forward(batch, &hooks, nullptr);
  for (const auto& r : rows) count_ += static_cast<int64_t>(r.size());
}

torch::Tensor SecondMomentAccumulator::mean_of_layer(int64_t layer) const {
  auto it = std::find(layers_.begin(), layers_.end(), layer);
  if (it == layers_.end()) fail(ErrorCode::InvalidArgument, "the statistics have no layer " + std::to_string(layer));
  if (count_ == 0) fail(ErrorCode::InvalidArgument, "no tokens were accumulated");
  return sums_[static_cast<size_t>(it - layers_.begin())].to(torch::kCPU, torch::kFloat64) / static_cast<double>(count_);
}

void SecondMomentAccumulator::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  std::map<std::string, torch::Tensor> tensors;
  for (size_t i = 0; i < layers_.size(); ++i) tensors["sum." + std::to_string(layers_[i])] = sums_[i];
  tensors["count"] = torch::tensor({count_}, torch::kInt64);
  auto with_digests = metadata;
  with_digests["digests"] = tensor_digests(tensors);
  write_safetensors(path, tensors, with_digests);
}

namespace {

// A sum of k kᵀ is symmetric positive semi-definite: a file whose sum is not was corrupted or written by
// something else, and would give C_accu a negative jitter or a solve with no meaning. Symmetry to 1e-5 of
// the largest entry (a float32 gemm is not bit-symmetric); no eigenvalue below −1e-4 of the mean
// diagonal, shown by a Cholesky factorisation of sum + 1e-4·mean(diag)·I (O(F³), once per load).
void check_second_moment(const torch::Tensor& sum, const std::string& path, const std::string& name) {
  auto bad = [&](const std::string& what) {
    fail(ErrorCode::InvalidArgument, path + ": '" + name + "' " + what + "; it is not a sum of k kᵀ (is the file corrupt?)");
  };
  auto s = sum.to(torch::kFloat64);
  if (!torch::isfinite(s).all().item<bool>()) bad("contains NaN or Inf");
  const double largest = s.abs().max().item<double>();
  if (largest == 0) return;  // nothing accumulated yet
  if ((s - s.t()).abs().max().item<double>() > 1e-5 * largest) bad("is not symmetric");
  auto diagonal = s.diagonal();
  if (diagonal.min().item<double>() < 0) bad("has a negative diagonal entry");
  const double shift = 1e-4 * diagonal.mean().item<double>();
  auto [l, info] = torch::linalg_cholesky_ex(s + shift * torch::eye(s.size(0), s.options()));
  if (info.item<int64_t>() != 0) bad("is not positive semi-definite");
}

}  // namespace

SecondMomentAccumulator SecondMomentAccumulator::load(const std::string& path, const ModelInfo& model,
                                                      torch::Device device, torch::Dtype products) {
  SafetensorsFile file(path);
  // Files written since digests were added carry one per tensor; each is verified before its values are used
  // (older files have none and load as before).
  Json digests;
  if (auto d = file.metadata().find("digests"); d != file.metadata().end()) {
    try {
      digests = Json::parse(d->second);
    } catch (const std::invalid_argument&) {
      fail(ErrorCode::InvalidArgument, path + ": its tensor digests are not valid JSON");
    }
    if (!digests.is_object()) fail(ErrorCode::InvalidArgument, path + ": its tensor digests are not a JSON object");
  }
  auto verified = [&](const TensorEntry& e, torch::Device where) {
    auto t = file.load(e, where, c10::nullopt);
    if (digests.is_object()) {
      const Json* want = digests.find(e.name);
      if (!want || !want->is_string()) fail(ErrorCode::InvalidArgument, path + ": tensor '" + e.name + "' has no digest");
      if (tensor_digest(t) != want->as_string())
        fail(ErrorCode::InvalidArgument, path + ": tensor '" + e.name + "' does not match its digest (the file is corrupt)");
    }
    return t;
  };
  std::vector<int64_t> layers;
  std::vector<torch::Tensor> sums;
  int64_t count = -1;
  for (const auto& e : file.entries()) {
    if (e.name == "count") {
      if (e.dtype != torch::kInt64 || e.shape != std::vector<int64_t>{1})
        fail(ErrorCode::InvalidArgument, path + ": 'count' must be one int64");
      count = verified(e, torch::kCPU).item<int64_t>();
      if (count < 0) fail(ErrorCode::InvalidArgument, path + ": 'count' is negative");
    } else if (e.name.rfind("sum.", 0) == 0) {
      const std::string digits = e.name.substr(4);
      if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos ||
          std::stoll(digits) >= model.n_layer)
        fail(ErrorCode::InvalidArgument, path + ": '" + e.name + "' names no layer of this model (0…" +
                                             std::to_string(model.n_layer - 1) + ")");
      if ((e.dtype != torch::kFloat32 && e.dtype != torch::kFloat64) ||
          e.shape != std::vector<int64_t>{model.d_ff, model.d_ff})
        fail(ErrorCode::InvalidArgument, path + ": '" + e.name + "' must be a float32 or float64 matrix of " +
                                             std::to_string(model.d_ff) + " × " + std::to_string(model.d_ff));
      auto sum = verified(e, device);
      check_second_moment(sum, path, e.name);
      layers.push_back(std::stoll(digits));
      sums.push_back(std::move(sum));
    }
  }
  if (count < 0 || layers.empty()) fail(ErrorCode::InvalidArgument, path + " is not a comeba statistics checkpoint");
  // safetensors keeps names sorted as strings; order the layers numerically.
  std::vector<size_t> order(layers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return layers[a] < layers[b]; });
  SecondMomentAccumulator acc;
  acc.products_ = products;
  for (size_t i : order) {
    acc.layers_.push_back(layers[i]);
    acc.sums_.push_back(sums[i]);
  }
  acc.count_ = count;
  return acc;
}

}  // namespace comeba
