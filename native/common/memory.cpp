#include "common/memory.h"

#include <dlfcn.h>
#include <link.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <torch/version.h>

// The device-generic allocator interface (c10::DeviceAllocator, torch 2.10 and later here to be safe) answers
// without CUDA headers; older torch falls back to the CUDA runtime that libtorch_cuda already loaded.
#if (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 10)) && \
    __has_include(<c10/core/CachingDeviceAllocator.h>)
#include <c10/core/CachingDeviceAllocator.h>
#define COMEBA_DEVICE_ALLOCATOR 1
#endif

namespace comeba {
namespace {

DeviceMemory host_memory() {
  DeviceMemory m;
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {  // "MemTotal:       24568836 kB" (some lines have no unit)
    long long kib = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %lld", &kib) == 1) m.free = kib * 1024;
    if (std::sscanf(line.c_str(), "MemTotal: %lld", &kib) == 1) m.total = kib * 1024;
  }
  return m;
}

// cudaMemGetInfo from the libcudart that is already loaded (torch's dependency), found by name among the
// loaded objects; never loads one itself.
using MemGetInfo = int (*)(size_t*, size_t*);
MemGetInfo find_mem_get_info() {
  static MemGetInfo fn = [] {
    std::string path;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* data) {
          if (info->dlpi_name && std::strstr(info->dlpi_name, "libcudart.so")) {
            *static_cast<std::string*>(data) = info->dlpi_name;
            return 1;
          }
          return 0;
        },
        &path);
    if (path.empty()) return static_cast<MemGetInfo>(nullptr);
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
    return handle ? reinterpret_cast<MemGetInfo>(dlsym(handle, "cudaMemGetInfo")) : nullptr;
  }();
  return fn;
}

#ifdef COMEBA_DEVICE_ALLOCATOR
template <typename A, typename = void>
struct HasMemoryInfo : std::false_type {};
template <typename A>
struct HasMemoryInfo<A, std::void_t<decltype(std::declval<A&>().getMemoryInfo(c10::DeviceIndex{0}))>> : std::true_type {};

template <typename A>
std::optional<std::pair<size_t, size_t>> allocator_memory_info(A* allocator, c10::DeviceIndex index) {
  if constexpr (HasMemoryInfo<A>::value) {
    try {
      return allocator->getMemoryInfo(index);
    } catch (const c10::Error&) {  // not implemented by this allocator
    }
  }
  return std::nullopt;
}
#endif

}  // namespace

DeviceMemory device_memory(torch::Device device) {
  if (!device.is_cuda()) return host_memory();
  DeviceMemory m;
  const auto index = device.has_index() ? device.index() : c10::DeviceIndex{0};
  c10::DeviceGuard guard(torch::Device(torch::kCUDA, index));
  std::optional<std::pair<size_t, size_t>> info;
#ifdef COMEBA_DEVICE_ALLOCATOR
  auto* allocator = c10::getDeviceAllocator(c10::DeviceType::CUDA);
  info = allocator_memory_info(allocator, index);
  const auto stats = allocator->getDeviceStats(index);
  const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  m.allocated = stats.allocated_bytes[all].current;
  m.peak_allocated = stats.allocated_bytes[all].peak;
  m.reserved = stats.reserved_bytes[all].current;
  m.peak_reserved = stats.reserved_bytes[all].peak;
#endif
  if (!info) {
    if (auto fn = find_mem_get_info()) {
      size_t free = 0, total = 0;
      if (fn(&free, &total) == 0) info = std::make_pair(free, total);
    }
  }
  if (info) {
    m.free = static_cast<int64_t>(info->first);
    m.total = static_cast<int64_t>(info->second);
  }
  return m;
}

void reset_peak_memory(torch::Device device) {
#ifdef COMEBA_DEVICE_ALLOCATOR
  if (device.is_cuda()) c10::getDeviceAllocator(c10::DeviceType::CUDA)->resetPeakStats(device.has_index() ? device.index() : 0);
#else
  (void)device;
#endif
}

}  // namespace comeba
