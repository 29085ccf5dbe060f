#include "common/device.h"

#include <regex>

#include "common/error.h"

namespace comeba {

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  static const std::regex cuda(R"(cuda(?::(\d{1,4}))?)");  // bounded: stoll must not overflow
  std::smatch m;
  if (!std::regex_match(name, m, cuda))
    fail(ErrorCode::InvalidArgument, "unknown device '" + name + "' (expected 'cpu', 'cuda' or 'cuda:N')");
  if (!torch::cuda::is_available())
    fail(ErrorCode::DeviceUnavailable, "device '" + name + "' requested but CUDA is not available to this libtorch "
                                       "(a CPU build, or no GPU/driver); `npx comeba inspect` shows what was found");
  const int64_t index = m[1].matched ? std::stoll(m[1]) : 0;
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (index >= count)
    fail(ErrorCode::DeviceUnavailable, "device '" + name + "' requested but only " + std::to_string(count) + " CUDA device(s) exist");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

torch::Dtype parse_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "float16") return torch::kFloat16;
  if (name == "bfloat16") return torch::kBFloat16;
  fail(ErrorCode::InvalidArgument, "unknown dtype '" + name + "' (expected 'float32', 'float16' or 'bfloat16')");
}

std::string dtype_name(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat32: return "float32";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    default: return c10::toString(dtype);
  }
}

torch::Tensor device_ints(const std::vector<int64_t>& values, torch::Device device) {
  return torch::tensor(values, torch::kInt64).to(device);
}

}  // namespace comeba
