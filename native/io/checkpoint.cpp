#include "io/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "io/safetensors.h"

namespace comeba {
namespace fs = std::filesystem;
namespace {

[[noreturn]] void bad_checkpoint(const std::string& dir, const std::string& what) {
  fail(ErrorCode::InvalidCheckpoint, "invalid checkpoint " + dir + ": " + what);
}

Json read_json_file(const fs::path& path, const std::string& dir) {
  // Reading a FIFO or a device would block or never end.
  if (!fs::is_regular_file(path)) bad_checkpoint(dir, path.filename().string() + " is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) bad_checkpoint(dir, "cannot read " + path.filename().string());
  std::stringstream text;
  text << in.rdbuf();
  try {
    return Json::parse(text.str());
  } catch (const std::invalid_argument& e) {
    bad_checkpoint(dir, path.filename().string() + " is not valid JSON (" + e.what() + ")");
  }
}

// The safetensors files of the folder: the single file, or the shards named by the index.
std::vector<fs::path> weight_files(const std::string& dir) {
  const fs::path root(dir);
  if (fs::exists(root / "model.safetensors")) return {root / "model.safetensors"};
  const fs::path index_path = root / "model.safetensors.index.json";
  if (!fs::exists(index_path)) {
    bool has_bin = fs::exists(root / "pytorch_model.bin") || fs::exists(root / "pytorch_model.bin.index.json");
    bad_checkpoint(dir, has_bin ? "only pytorch_model.bin weights found; convert them to safetensors "
                                  "(model.save_pretrained(dir, safe_serialization=True))"
                                : "no model.safetensors or model.safetensors.index.json");
  }
  Json index = read_json_file(index_path, dir);
  const Json* map = index.find("weight_map");
  if (!map || !map->is_object()) bad_checkpoint(dir, "model.safetensors.index.json has no weight_map object");
  std::set<std::string> shards;
  for (const auto& [tensor, file] : map->members()) {
    if (!file.is_string()) bad_checkpoint(dir, "weight_map entry for '" + tensor + "' is not a file name");
    if (file.as_string().find('/') != std::string::npos || file.as_string().find("..") != std::string::npos)
      bad_checkpoint(dir, "weight_map names a file outside the folder: " + file.as_string());
    shards.insert(file.as_string());
  }
  std::vector<fs::path> files;
  for (const auto& name : shards) {
    if (!fs::exists(root / name)) bad_checkpoint(dir, "shard " + name + " named by the index is missing");
    files.push_back(root / name);
  }
  return files;
}

}  // namespace

Json read_config(const std::string& dir) {
  if (!fs::is_directory(dir)) bad_checkpoint(dir, "not a directory");
  const fs::path path = fs::path(dir) / "config.json";
  if (!fs::exists(path)) bad_checkpoint(dir, "missing config.json");
  Json config = read_json_file(path, dir);
  if (!config.is_object()) bad_checkpoint(dir, "config.json is not a JSON object");
  return config;
}

int64_t config_int(const Json& config, const std::string& key, const std::string& dir) {
  const Json* v = config.find(key);
  if (!v || !v->is_integer()) bad_checkpoint(dir, "config.json needs an integer '" + key + "'");
  return v->as_int();
}

int64_t config_int_or(const Json& config, const std::string& key, int64_t fallback) {
  const Json* v = config.find(key);
  return v && v->is_integer() ? v->as_int() : fallback;
}

double config_double_or(const Json& config, const std::string& key, double fallback) {
  const Json* v = config.find(key);
  return v && v->is_number() ? v->as_double() : fallback;
}

std::string config_string_or(const Json& config, const std::string& key, const std::string& fallback) {
  const Json* v = config.find(key);
  return v && v->is_string() ? v->as_string() : fallback;
}

bool config_bool_or(const Json& config, const std::string& key, bool fallback) {
  const Json* v = config.find(key);
  return v && v->is_bool() ? v->as_bool() : fallback;
}

int64_t config_first_int_or(const Json& config, const std::string& key, int64_t fallback) {
  const Json* v = config.find(key);
  if (v && v->is_array() && !v->items().empty()) v = &v->items()[0];
  return v && v->is_integer() ? v->as_int() : fallback;
}

CheckpointWeights::CheckpointWeights(const std::string& dir, torch::Device device, torch::Dtype dtype) : dir_(dir) {
  for (const auto& path : weight_files(dir)) {
    SafetensorsFile file(path.string());
    for (const auto& entry : file.entries()) {
      if (tensors_.count(entry.name)) bad_checkpoint(dir, "tensor '" + entry.name + "' appears in two files");
      const bool floating = c10::isFloatingType(entry.dtype);
      tensors_[entry.name] = file.load(entry, device, floating ? c10::optional<torch::Dtype>(dtype) : c10::nullopt);
    }
  }
}

std::string CheckpointWeights::resolve(const std::string& name) const {
  if (tensors_.count(name)) return name;
  const std::string prefix = "transformer.";
  if (name.rfind(prefix, 0) == 0 && tensors_.count(name.substr(prefix.size()))) return name.substr(prefix.size());
  return {};
}

bool CheckpointWeights::has(const std::string& name) const { return !resolve(name).empty(); }

torch::Tensor CheckpointWeights::take(const std::string& name, const std::vector<int64_t>& shape) {
  const std::string key = resolve(name);
  if (key.empty()) bad_checkpoint(dir_, "tensor '" + name + "' is missing");
  auto node = tensors_.extract(key);
  torch::Tensor t = std::move(node.mapped());
  if (!t.is_floating_point())
    bad_checkpoint(dir_, "tensor '" + name + "' has dtype " + std::string(c10::toString(t.scalar_type())) +
                             "; weights must be floating point");
  if (t.sizes().vec() != shape) {
    std::ostringstream msg;
    msg << "tensor '" << name << "' has shape " << t.sizes() << ", expected " << c10::IntArrayRef(shape);
    bad_checkpoint(dir_, msg.str());
  }
  return t;
}

void CheckpointWeights::expect_consumed(const std::vector<std::string>& ignorable) const {
  for (const auto& [name, t] : tensors_) {
    bool ok = false;
    for (const auto& suffix : ignorable)
      ok = ok || (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0);
    if (!ok) bad_checkpoint(dir_, "unexpected tensor '" + name + "'");
  }
}

}  // namespace comeba
