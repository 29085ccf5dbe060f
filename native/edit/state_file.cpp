#include "edit/state_file.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "common/error.h"
#include "io/json.h"
#include "io/safetensors.h"

namespace comeba {
namespace {

// 2: every tensor's digest in the metadata, verified at load (format 1 had none).
constexpr const char* kFormat = "comeba-editor-state/2";

std::map<std::string, torch::Tensor> state_tensors(const std::vector<LayerState>& state, int64_t step) {
  std::map<std::string, torch::Tensor> tensors;
  std::vector<double> alphas;
  std::vector<int64_t> layers;
  for (const auto& s : state) {
    const std::string l = std::to_string(s.layer);
    tensors["delta." + l] = s.delta;
    if (s.c_accu.defined()) tensors["c_accu." + l] = s.c_accu;
    alphas.push_back(s.alpha);
    layers.push_back(s.layer);
  }
  tensors["alpha"] = torch::tensor(alphas, torch::kFloat64);
  tensors["layers"] = torch::tensor(layers, torch::kInt64);
  tensors["step"] = torch::tensor({step}, torch::kInt64);
  return tensors;
}

// FNV-1a over 64-bit little-endian words (then the tail bytes): each step is a bijection of the running
// hash, so any change to one word changes the digest. Not cryptographic: it guards against corruption
// (a flipped bit, a truncated copy), not against someone forging a state, and runs at memory speed.
uint64_t fnv1a_words(uint64_t hash, const uint8_t* p, size_t n) {
  constexpr uint64_t kPrime = 1099511628211ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, p + i, 8);
    hash = (hash ^ word) * kPrime;
  }
  for (; i < n; ++i) hash = (hash ^ p[i]) * kPrime;
  return hash;
}

constexpr uint64_t kOffsetBasis = 1469598103934665603ULL;

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string tensor_digest(const torch::Tensor& tensor) {
  auto t = tensor.detach().to(torch::kCPU).contiguous();
  return hex(fnv1a_words(kOffsetBasis, static_cast<const uint8_t*>(t.data_ptr()), t.numel() * t.element_size()));
}

[[noreturn]] void bad_state(const std::string& path, const std::string& what) {
  fail(ErrorCode::InvalidArgument, "cannot load editor state " + path + ": " + what);
}

}  // namespace

int64_t save_editor_state(const Editor& editor, const std::string& path) {
  const auto tensors = state_tensors(editor.state(), editor.step());
  std::string digests = "{";
  for (const auto& [name, t] : tensors) digests += (digests.size() > 1 ? ",\"" : "\"") + name + "\":\"" + tensor_digest(t) + "\"";
  digests += "}";
  write_safetensors(path, tensors,
                    {{"format", kFormat}, {"mode", edit_mode_name(editor.options().mode)}, {"digests", digests}});
  return static_cast<int64_t>(std::filesystem::file_size(path));
}

namespace {

// The file as safetensors; its format errors reported as a state that cannot be loaded (it is no checkpoint).
SafetensorsFile open_state(const std::string& path) {
  try {
    return SafetensorsFile(path);
  } catch (const Error& e) {
    bad_state(path, e.what());
  }
}

}  // namespace

int64_t load_editor_state(Editor& editor, const std::string& path) {
  SafetensorsFile file = open_state(path);
  const auto& meta = file.metadata();
  auto format = meta.find("format");
  if (format == meta.end() || format->second != kFormat)
    bad_state(path, format != meta.end() && format->second == "comeba-editor-state/1"
                        ? "it was written by an older comeba without integrity digests; redo the edits or load it with that version"
                        : std::string("it is not a comeba editor state (format ") + kFormat + ")");
  auto mode = meta.find("mode");
  if (mode == meta.end() || mode->second != edit_mode_name(editor.options().mode))
    bad_state(path, "it was saved by a '" + (mode == meta.end() ? "?" : mode->second) + "' editor, not '" +
                        edit_mode_name(editor.options().mode) + "'");
  Json digests;
  try {
    auto d = meta.find("digests");
    if (d == meta.end()) bad_state(path, "it has no tensor digests");
    digests = Json::parse(d->second);
  } catch (const std::invalid_argument&) {
    bad_state(path, "its tensor digests are not valid JSON");
  }

  // Every tensor is read and verified against its digest before any value is looked at.
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& e : file.entries()) {
    auto t = file.load(e, torch::kCPU, c10::nullopt);
    const Json* expected = digests.find(e.name);
    if (!expected || !expected->is_string()) bad_state(path, "tensor '" + e.name + "' has no digest");
    if (tensor_digest(t) != expected->as_string())
      bad_state(path, "tensor '" + e.name + "' does not match its digest (the file is corrupt)");
    tensors[e.name] = std::move(t);
  }
  if (digests.is_object() && digests.members().size() != tensors.size())
    bad_state(path, "its digests name tensors that the file does not hold");
  auto get = [&](const std::string& name, torch::Dtype dtype) -> torch::Tensor {
    auto it = tensors.find(name);
    if (it == tensors.end()) bad_state(path, "tensor '" + name + "' is missing");
    if (it->second.scalar_type() != dtype)
      bad_state(path, "tensor '" + name + "' is " + c10::toString(it->second.scalar_type()) + ", not " + c10::toString(dtype));
    return it->second;
  };
  auto layers = get("layers", torch::kInt64);
  auto alphas = get("alpha", torch::kFloat64);
  auto step = get("step", torch::kInt64);
  if (layers.dim() != 1 || alphas.dim() != 1 || layers.numel() != alphas.numel() || step.numel() != 1)
    bad_state(path, "its layers, alpha and step do not fit together");
  if (step.item<int64_t>() < 0) bad_state(path, "its step is negative");
  std::vector<LayerState> state;
  for (int64_t i = 0; i < layers.numel(); ++i) {
    LayerState s;
    s.layer = layers[i].item<int64_t>();
    s.alpha = alphas[i].item<double>();
    const std::string l = std::to_string(s.layer);
    if (!std::isfinite(s.alpha) || s.alpha < 0) bad_state(path, "α of layer " + l + " is not a finite number ≥ 0");
    s.delta = get("delta." + l, torch::kFloat32);
    if (!torch::isfinite(s.delta).all().item<bool>()) bad_state(path, "ΔW of layer " + l + " contains NaN or Inf");
    if (tensors.count("c_accu." + l)) {
      s.c_accu = tensors["c_accu." + l];
      if (!s.c_accu.is_floating_point() || !torch::isfinite(s.c_accu).all().item<bool>())
        bad_state(path, "C_accu of layer " + l + " is not a finite floating-point matrix");
    }
    state.push_back(std::move(s));
  }
  editor.restore(std::move(state), step.item<int64_t>());
  return editor.step();
}

std::string editor_state_checksum(const Editor& editor) {
  uint64_t hash = kOffsetBasis;
  for (const auto& [name, tensor] : state_tensors(editor.state(), editor.step())) {
    auto t = tensor.to(torch::kCPU).contiguous();
    hash = fnv1a_words(hash, reinterpret_cast<const uint8_t*>(name.data()), name.size());
    hash = fnv1a_words(hash, static_cast<const uint8_t*>(t.data_ptr()), t.numel() * t.element_size());
  }
  return hex(hash);
}

}  // namespace comeba
