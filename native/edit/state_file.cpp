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
constexpr const char* kKeysFormat = "comeba-editor-keys/1";
constexpr const char* kDeltaFormat = "comeba-editor-delta/1";

// ΔW and α per layer, and the step; a full state also C_accu and the retarget rule's key history.
std::map<std::string, torch::Tensor> state_tensors(const std::vector<LayerState>& state, int64_t step, bool full = true) {
  std::map<std::string, torch::Tensor> tensors;
  std::vector<double> alphas;
  std::vector<int64_t> layers;
  for (const auto& s : state) {
    const std::string l = std::to_string(s.layer);
    tensors["delta." + l] = s.delta;
    if (full && s.c_accu.defined()) tensors["c_accu." + l] = s.c_accu;
    if (full && s.history.defined()) {
      tensors["history." + l] = s.history;
      tensors["history_norms." + l] = s.history_norms;
    }
    alphas.push_back(s.alpha);
    layers.push_back(s.layer);
  }
  tensors["alpha"] = torch::tensor(alphas, torch::kFloat64);
  tensors["layers"] = torch::tensor(layers, torch::kInt64);
  tensors["step"] = torch::tensor({step}, torch::kInt64);
  return tensors;
}

[[noreturn]] void bad_state(const std::string& path, const std::string& what) {
  fail(ErrorCode::InvalidArgument, "cannot load editor state " + path + ": " + what);
}

}  // namespace

namespace {

// Writes `tensors` with their digests, the format and the editor's mode in the metadata; returns the file's size.
int64_t write_verified(const std::string& path, const std::map<std::string, torch::Tensor>& tensors, const char* format, EditMode mode) {
  write_safetensors(path, tensors, {{"format", format}, {"mode", edit_mode_name(mode)}, {"digests", tensor_digests(tensors)}});
  return static_cast<int64_t>(std::filesystem::file_size(path));
}

}  // namespace

int64_t save_editor_state(Editor& editor, const std::string& path) {
  const auto c = editor.checkpoint_after(editor.step());
  return write_verified(path, state_tensors(c.state, c.step), kFormat, editor.options().mode);
}

int64_t save_editor_increment(Editor& editor, const std::string& keys_path, const std::string& delta_path, int64_t from_step) {
  const auto c = editor.checkpoint_after(from_step);
  std::map<std::string, torch::Tensor> keys;
  std::vector<int64_t> sizes;
  for (const auto& batch : c.keys) sizes.push_back(batch.keys.empty() ? 0 : batch.keys[0].size(1));
  for (size_t i = 0; i < c.state.size() && !c.keys.empty() && !c.keys[0].keys.empty(); ++i) {
    std::vector<torch::Tensor> columns;
    for (const auto& batch : c.keys) columns.push_back(batch.keys[i]);
    keys["keys." + std::to_string(c.state[i].layer)] = torch::cat(columns, 1);  // (F, Σ n)
    if (c.state[i].history.defined()) {
      std::vector<torch::Tensor> norms;
      for (const auto& batch : c.keys) norms.push_back(batch.norms.at(i));
      keys["norms." + std::to_string(c.state[i].layer)] = torch::cat(norms);    // (Σ n)
    }
  }
  keys["batch_sizes"] = torch::tensor(sizes, torch::kInt64);
  keys["steps"] = torch::tensor({from_step, c.step}, torch::kInt64);
  const auto mode = editor.options().mode;
  return write_verified(keys_path, keys, kKeysFormat, mode) + write_verified(delta_path, state_tensors(c.state, c.step, false), kDeltaFormat, mode);
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

namespace {

// Every tensor of a state file of `format` written by an editor of this mode, each verified against its digest
// before any value is looked at.
std::map<std::string, torch::Tensor> read_verified(const Editor& editor, const std::string& path, const char* expected) {
  SafetensorsFile file = open_state(path);
  const auto& meta = file.metadata();
  auto format = meta.find("format");
  if (format == meta.end() || format->second != expected)
    bad_state(path, format != meta.end() && format->second == "comeba-editor-state/1"
                        ? "it was written by an older comeba without integrity digests; redo the edits or load it with that version"
                        : std::string("it is not a comeba editor file of format ") + expected);
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
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& e : file.entries()) {
    auto t = file.load(e, torch::kCPU, c10::nullopt);
    const Json* want = digests.find(e.name);
    if (!want || !want->is_string()) bad_state(path, "tensor '" + e.name + "' has no digest");
    if (tensor_digest(t) != want->as_string()) bad_state(path, "tensor '" + e.name + "' does not match its digest (the file is corrupt)");
    tensors[e.name] = std::move(t);
  }
  if (digests.is_object() && digests.members().size() != tensors.size())
    bad_state(path, "its digests name tensors that the file does not hold");
  return tensors;
}

torch::Tensor get_tensor(const std::map<std::string, torch::Tensor>& tensors, const std::string& path, const std::string& name, torch::Dtype dtype) {
  auto it = tensors.find(name);
  if (it == tensors.end()) bad_state(path, "tensor '" + name + "' is missing");
  if (it->second.scalar_type() != dtype)
    bad_state(path, "tensor '" + name + "' is " + c10::toString(it->second.scalar_type()) + ", not " + c10::toString(dtype));
  return it->second;
}

// ΔW, α (and C_accu where the file has it) per layer, and the step, checked.
std::pair<std::vector<LayerState>, int64_t> parse_state(const std::map<std::string, torch::Tensor>& tensors, const std::string& path) {
  auto get = [&](const std::string& name, torch::Dtype dtype) { return get_tensor(tensors, path, name, dtype); };
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
      s.c_accu = tensors.at("c_accu." + l);
      if (!s.c_accu.is_floating_point() || !torch::isfinite(s.c_accu).all().item<bool>())
        bad_state(path, "C_accu of layer " + l + " is not a finite floating-point matrix");
    }
    if (tensors.count("history." + l)) {
      s.history = get("history." + l, torch::kFloat64);
      s.history_norms = get("history_norms." + l, torch::kFloat64);
      if (!torch::isfinite(s.history).all().item<bool>() || !torch::isfinite(s.history_norms).all().item<bool>())
        bad_state(path, "the key history of layer " + l + " contains NaN or Inf");
    }
    state.push_back(std::move(s));
  }
  return {std::move(state), step.item<int64_t>()};
}

}  // namespace

int64_t load_editor_state(Editor& editor, const std::string& path) {
  auto [state, step] = parse_state(read_verified(editor, path, kFormat), path);
  editor.restore(std::move(state), step);
  return editor.step();
}

int64_t load_editor_chain(Editor& editor, const std::string& base_path, const std::vector<std::string>& keys_paths,
                          const std::string& delta_path) {
  auto [state, step] = parse_state(read_verified(editor, base_path, kFormat), base_path);
  const bool accumulates = editor.options().mode != EditMode::Memit;
  for (auto& s : state)
    if (s.c_accu.defined()) s.c_accu = editor.place_accumulator(s.c_accu);
  for (const auto& path : keys_paths) {
    const auto tensors = read_verified(editor, path, kKeysFormat);
    auto steps = get_tensor(tensors, path, "steps", torch::kInt64);
    auto sizes = get_tensor(tensors, path, "batch_sizes", torch::kInt64);
    if (steps.numel() != 2 || sizes.dim() != 1) bad_state(path, "its steps and batch sizes do not fit together");
    const int64_t from = steps[0].item<int64_t>(), to = steps[1].item<int64_t>();
    if (from != step) bad_state(path, "it holds the batches after step " + std::to_string(from) + ", but the state before it is at step " + std::to_string(step));
    if (to - from != sizes.numel()) bad_state(path, "it covers steps " + std::to_string(from) + "–" + std::to_string(to) + " but holds " + std::to_string(sizes.numel()) + " batches");
    for (auto& s : state) {
      if (!accumulates) continue;
      auto K = get_tensor(tensors, path, "keys." + std::to_string(s.layer), torch::kFloat64);
      if (K.dim() != 2 || K.size(0) != s.c_accu.size(0) || K.size(1) != sizes.sum().item<int64_t>())
        bad_state(path, "the keys of layer " + std::to_string(s.layer) + " do not fit the batch sizes and the model");
      if (!torch::isfinite(K).all().item<bool>()) bad_state(path, "the keys of layer " + std::to_string(s.layer) + " contain NaN or Inf");
      // Batch by batch, as the edits accumulated them: the same operations in the same order.
      for (int64_t b = 0, at = 0; b < sizes.numel(); at += sizes[b].item<int64_t>(), ++b) {
        auto k = K.narrow(1, at, sizes[b].item<int64_t>()).contiguous().to(s.c_accu.device(), s.c_accu.scalar_type());
        s.c_accu.addmm_(k, k.t());
      }
      if (s.history.defined()) {  // the retarget rule's history grows by the same keys
        auto norms = get_tensor(tensors, path, "norms." + std::to_string(s.layer), torch::kFloat64);
        if (norms.dim() != 1 || norms.size(0) != K.size(1) || !torch::isfinite(norms).all().item<bool>())
          bad_state(path, "the key norms of layer " + std::to_string(s.layer) + " do not fit its keys");
        s.history = torch::cat({s.history, K}, 1);
        s.history_norms = torch::cat({s.history_norms, norms});
      }
    }
    step = to;
  }
  if (!delta_path.empty()) {
    auto [delta, delta_step] = parse_state(read_verified(editor, delta_path, kDeltaFormat), delta_path);
    if (delta_step != step) bad_state(delta_path, "it is at step " + std::to_string(delta_step) + " but the keys end at step " + std::to_string(step));
    if (delta.size() != state.size()) bad_state(delta_path, "it has " + std::to_string(delta.size()) + " layers, the base " + std::to_string(state.size()));
    for (size_t i = 0; i < state.size(); ++i) {
      if (delta[i].layer != state[i].layer) bad_state(delta_path, "its layers differ from the base's");
      state[i].delta = delta[i].delta;
      state[i].alpha = delta[i].alpha;
    }
  } else if (!keys_paths.empty()) {
    fail(ErrorCode::InvalidArgument, "keys files need the delta file of their last step");
  }
  editor.restore(std::move(state), step);
  return editor.step();
}

std::string editor_state_checksum(const Editor& editor) {
  uint64_t hash = kFnvOffsetBasis;
  for (const auto& [name, tensor] : state_tensors(editor.state(), editor.step())) {
    auto t = tensor.to(torch::kCPU).contiguous();
    hash = fnv1a_words(hash, reinterpret_cast<const uint8_t*>(name.data()), name.size());
    hash = fnv1a_words(hash, static_cast<const uint8_t*>(t.data_ptr()), t.numel() * t.element_size());
  }
  return hex64(hash);
}

}  // namespace comeba
