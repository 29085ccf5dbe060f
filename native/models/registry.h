// The architectures comeba can run, one constructor per config.json model_type.
#pragma once

#include <memory>
#include <string>

#include "io/json.h"
#include "models/causal_lm.h"

namespace comeba {

std::unique_ptr<CausalLM> make_gpt2(const std::string& dir, const Json& config, torch::Device device, torch::Dtype dtype);
std::unique_ptr<CausalLM> make_gptj(const std::string& dir, const Json& config, torch::Device device, torch::Dtype dtype);
// llama, mistral, qwen2, qwen3; null for another model_type.
std::unique_ptr<CausalLM> make_llama_family(const std::string& model_type, const std::string& dir, const Json& config,
                                            torch::Device device, torch::Dtype dtype);

}  // namespace comeba
