// E[kkᵀ] of the edited modules' inputs (METHOD.md §3): the uncentred second moment over every real token
// of a corpus, accumulated batch by batch so a long collection can be checkpointed and resumed.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "models/inference.h"

namespace comeba {

class SecondMomentAccumulator {
 public:
  // `layers` are layer numbers of a model with `info`'s shape, in any order (kept sorted). The sums are kept in
  // `dtype`; each batch's products x xᵀ are taken in `products` (float32 products summed in float64: the GEMM at
  // float32 speed, the accumulation over millions of tokens without float32's drift).
  SecondMomentAccumulator(std::vector<int64_t> layers, const ModelInfo& info, torch::Dtype dtype, torch::Device device,
                          torch::Dtype products);

  // Runs the batch (right-padded) and adds x xᵀ of every real token's module input at every layer.
  void add(const CausalLM& model, const TokenRows& rows);

  int64_t count() const { return count_; }
  const std::vector<int64_t>& layers() const { return layers_; }
  // E[kkᵀ] of layer number `layer`, float64 on the CPU.
  torch::Tensor mean_of_layer(int64_t layer) const;

  // Sums and count as safetensors ("sum.<layer>", "count"), with `metadata`; `load` resumes from it.
  void save(const std::string& path, const std::map<std::string, std::string>& metadata) const;
  static SecondMomentAccumulator load(const std::string& path, const ModelInfo& model, torch::Device device,
                                      torch::Dtype products);

 private:
  SecondMomentAccumulator() = default;

  std::vector<int64_t> layers_;
  std::vector<torch::Tensor> sums_;  // (F, F)
  torch::Dtype products_ = torch::kFloat64;
  int64_t count_ = 0;
};

}  // namespace comeba
