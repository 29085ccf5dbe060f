// The addon's entry point: registers the native classes and the build/runtime facts the loader checks.
#include <napi.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <thread>

#include "binding/addon_data.h"
#include "binding/editor_wrap.h"
#include "binding/hooked_model_wrap.h"
#include "binding/stats_wrap.h"
#include "binding/worker.h"
#include "common/device.h"
#include "common/memory.h"
#include "models/inference.h"

namespace comeba::binding {
namespace {

Napi::Value build_info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto obj = Napi::Object::New(env);
  obj.Set("torchVersion", TORCH_VERSION);
  obj.Set("cxx11Abi", static_cast<bool>(_GLIBCXX_USE_CXX11_ABI));
  // Whether the libtorch this addon runs on has its CUDA backend (the addon itself uses only the generic API):
  // the backend's hooks are registered, whether or not a GPU and driver are there (at::hasCUDA() needs both).
  obj.Set("cudaCompiled", at::detail::getCUDAHooks().isBuilt());
  return obj;
}

Napi::Value cuda_info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto obj = Napi::Object::New(env);
  const bool available = torch::cuda::is_available();
  obj.Set("available", available);
  obj.Set("deviceCount", static_cast<double>(available ? torch::cuda::device_count() : 0));
  return obj;
}

Napi::Value set_threads(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1) {
    auto error = Napi::TypeError::New(info.Env(), "setThreads expects a positive integer");
    error.Set("code", Napi::String::New(info.Env(), "INVALID_ARGUMENT"));
    throw error;
  }
  torch::set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value get_decode_counts(const Napi::CallbackInfo& info) {
  const auto c = comeba::decode_counts();
  auto obj = Napi::Object::New(info.Env());
  obj.Set("steps", static_cast<double>(c.steps));
  obj.Set("rowSteps", static_cast<double>(c.row_steps));
  obj.Set("staleSteps", static_cast<double>(c.stale_steps));
  obj.Set("recomputedRows", static_cast<double>(c.recomputed_rows));
  obj.Set("recomputedPositions", static_cast<double>(c.recomputed_positions));
  return obj;
}

Napi::Value get_threads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), torch::get_num_threads());
}

torch::Device device_argument(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsString()) {
    auto error = Napi::TypeError::New(info.Env(), "expected a device name ('cpu', 'cuda' or 'cuda:N')");
    error.Set("code", Napi::String::New(info.Env(), "INVALID_ARGUMENT"));
    throw error;
  }
  const std::string name = info[0].As<Napi::String>();
  return run_sync(info.Env(), [&] { return parse_device(name); });
}

Napi::Value device_memory_info(const Napi::CallbackInfo& info) {
  const auto device = device_argument(info);
  const auto m = run_sync(info.Env(), [&] { return device_memory(device); });
  auto obj = Napi::Object::New(info.Env());
  obj.Set("free", static_cast<double>(m.free));
  obj.Set("total", static_cast<double>(m.total));
  obj.Set("allocated", static_cast<double>(m.allocated));
  obj.Set("reserved", static_cast<double>(m.reserved));
  obj.Set("peakAllocated", static_cast<double>(m.peak_allocated));
  obj.Set("peakReserved", static_cast<double>(m.peak_reserved));
  return obj;
}

Napi::Value reset_peak_memory_stats(const Napi::CallbackInfo& info) {
  const auto device = device_argument(info);
  run_sync(info.Env(), [&] { reset_peak_memory(device); return true; });
  return info.Env().Undefined();
}

}  // namespace
}  // namespace comeba::binding

// NODE_API_MODULE pastes the function name into an identifier, so it must be an unqualified name.
static Napi::Object register_addon(Napi::Env env, Napi::Object exports) {
  using namespace comeba::binding;
  env.SetInstanceData<AddonData>(new AddonData());
  exports.Set("buildInfo", Napi::Function::New(env, build_info));
  exports.Set("cudaInfo", Napi::Function::New(env, cuda_info));
  exports.Set("setThreads", Napi::Function::New(env, set_threads));
  exports.Set("getThreads", Napi::Function::New(env, get_threads));
  exports.Set("decodeCounts", Napi::Function::New(env, get_decode_counts));
  exports.Set("deviceMemory", Napi::Function::New(env, device_memory_info));
  exports.Set("resetPeakMemory", Napi::Function::New(env, reset_peak_memory_stats));
  HookedModelWrap::init(env, exports);
  SecondMomentsWrap::init(env, exports);
  EditorWrap::init(env, exports);
  return exports;
}

NODE_API_MODULE(comeba, register_addon)
