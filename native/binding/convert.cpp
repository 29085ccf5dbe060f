#include "binding/convert.h"

#include <cmath>

namespace comeba::binding {

void throw_invalid(Napi::Env env, const std::string& message) {
  auto error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "INVALID_ARGUMENT"));
  throw error;
}

void throw_disposed(Napi::Env env, const std::string& what) {
  auto error = Napi::Error::New(env, "the " + what + " has been disposed");
  error.Set("code", Napi::String::New(env, "DISPOSED"));
  throw error;
}

namespace {

std::string describe(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "the number " + v.ToString().Utf8Value();
    case napi_string: return "a string";
    case napi_object: return v.IsArray() ? "an array" : v.IsTypedArray() ? "a typed array" : "an object";
    default: return "a value of another type";
  }
}

int64_t to_int(const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) throw_invalid(v.Env(), "expected an integer for " + what + " but received " + describe(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  // Exact integers only (|d| ≤ 2^53 − 1): casting a larger or non-finite double to int64 is undefined.
  if (!(std::fabs(d) <= 9007199254740991.0) || d != std::trunc(d))
    throw_invalid(v.Env(), "expected an integer for " + what + " but received " + describe(v));
  return static_cast<int64_t>(d);
}

}  // namespace

std::string to_string(const Napi::Value& value, const std::string& what) {
  if (!value.IsString()) throw_invalid(value.Env(), "expected a string for " + what + " but received " + describe(value));
  return value.As<Napi::String>().Utf8Value();
}

Napi::Object to_object(const Napi::Value& value, const std::string& what) {
  if (value.IsUndefined()) return Napi::Object::New(value.Env());
  if (!value.IsObject()) throw_invalid(value.Env(), "expected an object for " + what + " but received " + describe(value));
  return value.As<Napi::Object>();
}

std::string get_string(const Napi::Object& obj, const char* key, const std::string& fallback) {
  auto v = obj.Get(key);
  return v.IsUndefined() ? fallback : to_string(v, key);
}

int64_t get_int(const Napi::Object& obj, const char* key, int64_t fallback) {
  auto v = obj.Get(key);
  return v.IsUndefined() ? fallback : to_int(v, key);
}

double get_double(const Napi::Object& obj, const char* key, double fallback) {
  auto v = obj.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw_invalid(obj.Env(), std::string("expected a number for ") + key + " but received " + describe(v));
  return v.As<Napi::Number>().DoubleValue();
}

namespace {

Napi::Value required(const Napi::Object& obj, const char* key) {
  auto v = obj.Get(key);
  if (v.IsUndefined()) throw_invalid(obj.Env(), std::string("the option ") + key + " is required");
  return v;
}

}  // namespace

std::string require_string(const Napi::Object& obj, const char* key) { return to_string(required(obj, key), key); }
int64_t require_int(const Napi::Object& obj, const char* key) { return to_int(required(obj, key), key); }
double require_double(const Napi::Object& obj, const char* key) {
  required(obj, key);
  return get_double(obj, key, 0);
}

torch::Dtype get_accumulator_dtype(const Napi::Object& obj, const char* key) {
  const std::string name = get_string(obj, key, "float64");
  if (name != "float32" && name != "float64") throw_invalid(obj.Env(), std::string(key) + " must be 'float32' or 'float64'");
  return name == "float64" ? torch::kFloat64 : torch::kFloat32;
}

bool get_bool(const Napi::Object& obj, const char* key, bool fallback) {
  auto v = obj.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw_invalid(obj.Env(), std::string("expected a boolean for ") + key + " but received " + describe(v));
  return v.As<Napi::Boolean>().Value();
}

std::vector<int64_t> to_token_list(const Napi::Value& value, const std::string& what) {
  std::vector<int64_t> out;
  if (value.IsTypedArray()) {
    auto arr = value.As<Napi::TypedArray>();
    if (arr.TypedArrayType() == napi_int32_array) {
      auto a = value.As<Napi::Int32Array>();
      out.assign(a.Data(), a.Data() + a.ElementLength());
      return out;
    }
    if (arr.TypedArrayType() == napi_uint32_array) {
      auto a = value.As<Napi::Uint32Array>();
      out.assign(a.Data(), a.Data() + a.ElementLength());
      return out;
    }
  }
  if (!value.IsArray())
    throw_invalid(value.Env(), "expected an array of token ids for " + what + " but received " + describe(value));
  auto arr = value.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) out.push_back(to_int(arr.Get(i), what + "[" + std::to_string(i) + "]"));
  return out;
}

TokenRows to_token_rows(const Napi::Value& value, const std::string& what) {
  if (!value.IsArray())
    throw_invalid(value.Env(), "expected an array of token arrays for " + what + " but received " + describe(value));
  auto arr = value.As<Napi::Array>();
  TokenRows rows;
  for (uint32_t i = 0; i < arr.Length(); ++i) rows.push_back(to_token_list(arr.Get(i), what + "[" + std::to_string(i) + "]"));
  return rows;
}

torch::Tensor to_float_tensor(const Napi::Value& data, const std::vector<int64_t>& shape, const std::string& what) {
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_invalid(data.Env(), "expected a Float32Array for " + what + " but received " + describe(data));
  auto arr = data.As<Napi::Float32Array>();
  // Checked before any tensor exists: torch::from_blob on a negative or overflowing shape aborts.
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) throw_invalid(data.Env(), "the shape of " + what + " has a negative dimension " + std::to_string(d));
    if (d > 0 && numel > INT64_MAX / d) throw_invalid(data.Env(), "the shape of " + what + " is too large");
    numel *= d;
  }
  if (numel != static_cast<int64_t>(arr.ElementLength()))
    throw_invalid(data.Env(), what + " has " + std::to_string(arr.ElementLength()) + " values but its shape needs " +
                                  std::to_string(numel));
  return torch::from_blob(arr.Data(), shape, torch::kFloat32).clone();
}

std::vector<ProbeSpec> to_probe_specs(const Napi::Value& value) {
  std::vector<ProbeSpec> specs;
  if (value.IsUndefined()) return specs;
  if (!value.IsArray()) throw_invalid(value.Env(), "expected an array for hooks but received " + describe(value));
  auto arr = value.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string what = "hooks[" + std::to_string(i) + "]";
    auto obj = to_object(arr.Get(i), what);
    ProbeSpec spec;
    spec.point = to_string(obj.Get("point"), what + ".point");
    const std::string action = to_string(obj.Get("action"), what + ".action");
    if (action == "recordInput") spec.action = ProbeSpec::Action::RecordInput;
    else if (action == "recordOutput") spec.action = ProbeSpec::Action::RecordOutput;
    else if (action == "add") spec.action = ProbeSpec::Action::Add;
    else if (action == "replaceWeight") spec.action = ProbeSpec::Action::ReplaceWeight;
    else throw_invalid(obj.Env(), what + ".action must be recordInput, recordOutput, add or replaceWeight, not '" + action + "'");
    if (spec.action != ProbeSpec::Action::ReplaceWeight)
      spec.positions = to_token_rows(obj.Get("positions"), what + ".positions");
    if (spec.action == ProbeSpec::Action::Add || spec.action == ProbeSpec::Action::ReplaceWeight) {
      auto shape = to_token_list(obj.Get("shape"), what + ".shape");
      spec.tensor = to_float_tensor(obj.Get("data"), shape, what + ".data");
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

namespace {

template <typename ArrayT>
Napi::Object tensor_as(Napi::Env env, const torch::Tensor& tensor, torch::Dtype dtype) {
  auto owned = new torch::Tensor(tensor.detach().to(torch::kCPU, dtype).contiguous());
  const size_t bytes = owned->numel() * owned->element_size();
  auto buffer = Napi::ArrayBuffer::New(env, owned->data_ptr(), bytes,
                                       [](Napi::Env, void*, torch::Tensor* t) { delete t; }, owned);
  auto obj = Napi::Object::New(env);
  obj.Set("data", ArrayT::New(env, owned->numel(), buffer, 0));
  obj.Set("shape", to_js_ints(env, tensor.sizes().vec()));
  return obj;
}

}  // namespace

Napi::Object to_js_tensor(Napi::Env env, const torch::Tensor& tensor) {
  return tensor_as<Napi::Float32Array>(env, tensor, torch::kFloat32);
}

Napi::Object to_js_tensor64(Napi::Env env, const torch::Tensor& tensor) {
  return tensor_as<Napi::Float64Array>(env, tensor, torch::kFloat64);
}

Napi::Array to_js_doubles(Napi::Env env, const std::vector<double>& values) {
  auto arr = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) arr.Set(i, Napi::Number::New(env, values[i]));
  return arr;
}

Napi::Array to_js_ints(Napi::Env env, const std::vector<int64_t>& values) {
  auto arr = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) arr.Set(i, Napi::Number::New(env, static_cast<double>(values[i])));
  return arr;
}

}  // namespace comeba::binding
