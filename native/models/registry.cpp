// config.json's model_type → architecture, plus the model-independent parts of CausalLM and TokenBatch.
#include "models/registry.h"

#include "common/error.h"
#include "io/checkpoint.h"

namespace comeba {

std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, torch::Device device, torch::Dtype dtype) {
  const Json config = read_config(dir);
  const std::string type = config_string_or(config, "model_type", "");
  if (type == "gpt2") return make_gpt2(dir, config, device, dtype);
  if (type == "gptj") return make_gptj(dir, config, device, dtype);
  if (auto model = make_llama_family(type, dir, config, device, dtype)) return model;
  fail(ErrorCode::UnsupportedArchitecture, "model_type '" + type + "' in " + dir +
                                               "/config.json is not supported (supported: gpt2, gptj, llama, mistral, qwen2, qwen3)");
}

ModelInfo read_model_info(const Json& config, const std::string& dir, const std::string& architecture,
                          const std::string& edited_module, const SizeKeys& keys) {
  ModelInfo info;
  info.architecture = architecture;
  info.n_layer = config_int(config, keys.n_layer, dir);
  info.d_model = config_int(config, keys.d_model, dir);
  info.n_head = config_int(config, keys.n_head, dir);
  info.vocab_size = config_int(config, "vocab_size", dir);
  info.n_ctx = config_int(config, keys.n_ctx, dir);
  info.d_ff = config_int_or(config, keys.d_ff, 4 * info.d_model);
  info.eos_token_id = config_first_int_or(config, "eos_token_id", -1);
  info.bos_token_id = config_first_int_or(config, "bos_token_id", -1);
  info.edited_module = edited_module;
  for (int64_t v : {info.n_layer, info.d_model, info.n_head, info.vocab_size, info.n_ctx, info.d_ff})
    if (v <= 0) fail(ErrorCode::InvalidCheckpoint, "config.json in " + dir + " has a non-positive size");
  if (keys.head_size_from_d_model && info.d_model % info.n_head != 0)
    fail(ErrorCode::InvalidCheckpoint, std::string(keys.d_model) + " is not a multiple of " + keys.n_head + " in " + dir + "/config.json");
  return info;
}

HookPoint CausalLM::parse_hook_point(const std::string& name) const {
  // The names follow the edited module's pattern: "<blocks>.{}.mlp.<module>", blocks being "transformer.h"
  // (GPT-2, GPT-J) or "model.layers" (the Llama family).
  const std::string& pattern = info().edited_module;
  const size_t hole = pattern.find("{}");
  const std::string blocks = pattern.substr(0, hole);           // "model.layers."
  const std::string module = pattern.substr(hole + 2);           // ".mlp.down_proj"
  HookPoint point;
  std::string digits;
  auto layer_digits = [&](const std::string& rest) {
    return !rest.empty() && rest.find_first_not_of("0123456789") == std::string::npos ? rest : std::string();
  };
  if (name.rfind(blocks, 0) == 0 && !(digits = layer_digits(name.substr(blocks.size()))).empty()) {
    point.site = HookSite::BlockOutput;
  } else if (name.rfind(blocks, 0) == 0 && name.size() > blocks.size() + module.size() &&
             name.compare(name.size() - module.size(), module.size(), module) == 0 &&
             !(digits = layer_digits(name.substr(blocks.size(), name.size() - blocks.size() - module.size()))).empty()) {
    point.site = HookSite::EditedModule;
  } else {
    fail(ErrorCode::InvalidArgument, "unknown hook point '" + name + "'; this " + info().architecture + " model has '" +
                                         blocks + "{l}' and '" + pattern + "'");
  }
  // Compared as text first: stoll throws out_of_range on 20 digits, which would read as an internal error.
  point.layer = digits.size() <= 9 ? std::stoll(digits) : INT64_MAX;
  if (point.layer >= info().n_layer)
    fail(ErrorCode::InvalidArgument, "hook point '" + name + "': layer " + digits +
                                         " does not exist (the model has " + std::to_string(info().n_layer) + ")");
  return point;
}

TokenBatch TokenBatch::pack(const std::vector<std::vector<int64_t>>& rows, bool left_pad, int64_t pad_id,
                            torch::Device device) {
  TokenBatch batch;
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t T = 0;
  for (const auto& r : rows) T = std::max<int64_t>(T, static_cast<int64_t>(r.size()));
  auto ids = torch::full({B, T}, pad_id, torch::kInt64);
  auto real = torch::zeros({B, T}, torch::kBool);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(rows[b].size());
    const int64_t offset = left_pad ? T - n : 0;
    if (n > 0) {
      ids[b].narrow(0, offset, n).copy_(torch::tensor(rows[b], torch::kInt64));
      real[b].narrow(0, offset, n).fill_(true);
    }
    batch.lengths.push_back(n);
    batch.offsets.push_back(offset);
  }
  batch.ids = ids.to(device);
  batch.real = real.to(device);
  batch.positions = (batch.real.to(torch::kInt64).cumsum(1) - 1).clamp_min(0);
  return batch;
}

}  // namespace comeba
