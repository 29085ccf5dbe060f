// How much memory a device has free, and what this process's tensors take of it: the memory plan of
// ConsecutiveEditor.create (lib/edit/memory.ts) and the benchmarks' peak figures read it.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace comeba {

struct DeviceMemory {
  int64_t free = -1, total = -1;  // bytes the device (CUDA) or the machine (CPU: MemAvailable, MemTotal) has
  // CUDA only: bytes in live tensors, held by the caching allocator (live or cached), and their peaks since
  // the last reset_peak_memory; -1 when this libtorch cannot say. Cached bytes count as used in `free`.
  int64_t allocated = -1, reserved = -1, peak_allocated = -1, peak_reserved = -1;
};

DeviceMemory device_memory(torch::Device device);
void reset_peak_memory(torch::Device device);

}  // namespace comeba
