#include "edit/state_file.h"

#include <filesystem>
#include <map>

#include "common/error.h"
#include "io/safetensors.h"

namespace comeba {
namespace {

constexpr const char* kFormat = "comeba-editor-state/1";

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

}  // namespace

int64_t save_editor_state(const Editor& editor, const std::string& path) {
  write_safetensors(path, state_tensors(editor.state(), editor.step()),
                    {{"format", kFormat}, {"mode", edit_mode_name(editor.options().mode)}});
  return static_cast<int64_t>(std::filesystem::file_size(path));
}

int64_t load_editor_state(Editor& editor, const std::string& path) {
  SafetensorsFile file(path);
  auto format = file.metadata().find("format");
  if (format == file.metadata().end() || format->second != kFormat)
    fail(ErrorCode::InvalidArgument, path + " is not a comeba editor state (format " + kFormat + ")");
  auto mode = file.metadata().find("mode");
  if (mode == file.metadata().end() || mode->second != edit_mode_name(editor.options().mode))
    fail(ErrorCode::InvalidArgument, path + " was saved by a '" + (mode == file.metadata().end() ? "?" : mode->second) +
                                         "' editor, not '" + edit_mode_name(editor.options().mode) + "'");
  std::map<std::string, const TensorEntry*> entries;
  for (const auto& e : file.entries()) entries[e.name] = &e;
  auto get = [&](const std::string& name) -> torch::Tensor {
    auto it = entries.find(name);
    if (it == entries.end()) return {};
    return file.load(*it->second, torch::kCPU, c10::nullopt);
  };
  auto layers = get("layers");
  auto alphas = get("alpha");
  auto step = get("step");
  if (!layers.defined() || !alphas.defined() || !step.defined() || layers.numel() != alphas.numel())
    fail(ErrorCode::InvalidArgument, path + " lacks the layers, alpha or step of an editor state");
  std::vector<LayerState> state;
  for (int64_t i = 0; i < layers.numel(); ++i) {
    LayerState s;
    s.layer = layers[i].item<int64_t>();
    s.alpha = alphas[i].item<double>();
    s.delta = get("delta." + std::to_string(s.layer));
    s.c_accu = get("c_accu." + std::to_string(s.layer));
    if (!s.delta.defined()) fail(ErrorCode::InvalidArgument, path + " has no ΔW for layer " + std::to_string(s.layer));
    state.push_back(std::move(s));
  }
  editor.restore(std::move(state), step.item<int64_t>());
  return editor.step();
}

std::string editor_state_checksum(const Editor& editor) {
  uint64_t hash = 1469598103934665603ULL;
  for (const auto& [name, tensor] : state_tensors(editor.state(), editor.step())) {
    auto t = tensor.to(torch::kCPU).contiguous();
    auto mix = [&](const uint8_t* p, size_t n) {
      for (size_t i = 0; i < n; ++i) hash = (hash ^ p[i]) * 1099511628211ULL;
    };
    mix(reinterpret_cast<const uint8_t*>(name.data()), name.size());
    mix(static_cast<const uint8_t*>(t.data_ptr()), t.numel() * t.element_size());
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(hash));
  return buf;
}

}  // namespace comeba
