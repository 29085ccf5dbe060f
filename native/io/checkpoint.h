// A Hugging Face checkpoint folder: config.json plus model.safetensors or sharded safetensors with
// model.safetensors.index.json. Models take their weights by HF name; anything missing, misshapen or
// left over is an InvalidCheckpoint error that names the tensor and the folder.
#pragma once

#include <torch/torch.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "io/json.h"

namespace comeba {

// Reads and parses `dir`/config.json.
Json read_config(const std::string& dir);

// Integer / float / string fields of config.json, with a default or a clear error when required.
int64_t config_int(const Json& config, const std::string& key, const std::string& dir);
int64_t config_int_or(const Json& config, const std::string& key, int64_t fallback);
double config_double_or(const Json& config, const std::string& key, double fallback);
std::string config_string_or(const Json& config, const std::string& key, const std::string& fallback);
bool config_bool_or(const Json& config, const std::string& key, bool fallback);
// An integer, or the first of a list of them (Llama 3 lists several eos_token_id).
int64_t config_first_int_or(const Json& config, const std::string& key, int64_t fallback);

class CheckpointWeights {
 public:
  // Loads every tensor of the folder's safetensors files; floating tensors are converted to `dtype`.
  CheckpointWeights(const std::string& dir, torch::Device device, torch::Dtype dtype);

  // Removes and returns the tensor `name` after checking its shape. Checkpoints saved from the base model
  // (no "transformer." prefix) are accepted too.
  torch::Tensor take(const std::string& name, const std::vector<int64_t>& shape);
  bool has(const std::string& name) const;

  // Fails if tensors other than the ignorable buffers (names ending in one of `ignorable`) are left.
  void expect_consumed(const std::vector<std::string>& ignorable) const;

 private:
  std::string resolve(const std::string& name) const;

  std::string dir_;
  std::map<std::string, torch::Tensor> tensors_;
};

}  // namespace comeba
