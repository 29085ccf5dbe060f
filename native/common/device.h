// Device and dtype names as the JS API spells them ("cpu", "cuda", "cuda:1"; "float32", "float16",
// "bfloat16"), checked against what this libtorch and machine can do.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace comeba {

torch::Device parse_device(const std::string& name);
torch::Dtype parse_dtype(const std::string& name);
std::string dtype_name(torch::Dtype dtype);

// Indices (row numbers, positions, token ids) as an int64 tensor on `device`.
torch::Tensor device_ints(const std::vector<int64_t>& values, torch::Device device);

}  // namespace comeba
