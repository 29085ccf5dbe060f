// JS ⇄ C++ conversions with argument checks: each failure is a TypeError-like INVALID_ARGUMENT naming the
// argument, what was expected and what arrived. Only plain C++ values leave this file for the core.
#pragma once

#include <napi.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "hooks/probe_hooks.h"
#include "models/inference.h"

namespace comeba::binding {

// Throws a JS Error with code INVALID_ARGUMENT.
[[noreturn]] void throw_invalid(Napi::Env env, const std::string& message);
// Throws a JS Error with code DISPOSED: "the <what> has been disposed".
[[noreturn]] void throw_disposed(Napi::Env env, const std::string& what);

std::string to_string(const Napi::Value& value, const std::string& what);
Napi::Object to_object(const Napi::Value& value, const std::string& what);  // undefined → {}
std::string get_string(const Napi::Object& obj, const char* key, const std::string& fallback);
int64_t get_int(const Napi::Object& obj, const char* key, int64_t fallback);
bool get_bool(const Napi::Object& obj, const char* key, bool fallback);
double get_double(const Napi::Object& obj, const char* key, double fallback);
// Settings whose defaults live in lib/ (lib/edit/options.ts, lib/model/types.ts): missing is INVALID_ARGUMENT.
std::string require_string(const Napi::Object& obj, const char* key);
int64_t require_int(const Napi::Object& obj, const char* key);
double require_double(const Napi::Object& obj, const char* key);
// "float32" | "float64" (statistics and C_accu storage).
torch::Dtype get_accumulator_dtype(const Napi::Object& obj, const char* key);

std::vector<int64_t> to_token_list(const Napi::Value& value, const std::string& what);
TokenRows to_token_rows(const Napi::Value& value, const std::string& what);

// A Float32Array (with an optional explicit shape) copied into a CPU float32 tensor.
torch::Tensor to_float_tensor(const Napi::Value& data, const std::vector<int64_t>& shape, const std::string& what);

std::vector<ProbeSpec> to_probe_specs(const Napi::Value& value);

Napi::Array to_js_doubles(Napi::Env env, const std::vector<double>& values);

// A float32 CPU tensor as { data: Float32Array, shape: number[] }; the array views the tensor's memory,
// which stays alive until the array is collected.
Napi::Object to_js_tensor(Napi::Env env, const torch::Tensor& tensor);
// The same with a Float64Array, for values whose checks need double precision.
Napi::Object to_js_tensor64(Napi::Env env, const torch::Tensor& tensor);

Napi::Array to_js_ints(Napi::Env env, const std::vector<int64_t>& values);

}  // namespace comeba::binding
