#include "binding/stats_wrap.h"

#include "binding/addon_data.h"
#include "binding/convert.h"
#include "binding/hooked_model_wrap.h"
#include "binding/worker.h"
#include "common/error.h"

namespace comeba::binding {
namespace {

struct LoadedStats {
  std::shared_ptr<CausalLM> model;
  std::shared_ptr<SecondMomentAccumulator> acc;
};


}  // namespace

void SecondMomentsWrap::init(Napi::Env env, Napi::Object exports) {
  auto cls = DefineClass(env, "NativeSecondMoments",
                         {StaticMethod("load", &SecondMomentsWrap::guard_static<&SecondMomentsWrap::load>),
                          InstanceMethod("add", &SecondMomentsWrap::guard<&SecondMomentsWrap::add>),
                          InstanceMethod("save", &SecondMomentsWrap::guard<&SecondMomentsWrap::save>),
                          InstanceMethod("mean", &SecondMomentsWrap::guard<&SecondMomentsWrap::mean>),
                          InstanceMethod("count", &SecondMomentsWrap::guard<&SecondMomentsWrap::count>),
                          InstanceMethod("layers", &SecondMomentsWrap::guard<&SecondMomentsWrap::layers>),
                          InstanceMethod("dispose", &SecondMomentsWrap::guard<&SecondMomentsWrap::dispose>)});
  addon_data(env).second_moments = Napi::Persistent(cls);
  exports.Set("NativeSecondMoments", cls);
}

SecondMomentsWrap::SecondMomentsWrap(const Napi::CallbackInfo& info) : GuardedWrap<SecondMomentsWrap>(info) {
  auto env = info.Env();
  if (info.Length() == 1 && info[0].IsExternal()) {
    auto* loaded = info[0].As<Napi::External<LoadedStats>>().Data();
    model_ = loaded->model;
    acc_ = loaded->acc;
    return;
  }
  model_ = HookedModelWrap::unwrap(info[0])->require_model(env);
  auto options = to_object(info[1], "options");
  auto layers = to_token_list(options.Get("layers"), "layers");
  const auto dtype = get_accumulator_dtype(options, "dtype");
  const auto products = get_accumulator_dtype(options, "products");
  acc_ = run_sync(env, [&] {
    return std::make_shared<SecondMomentAccumulator>(layers, model_->info(), dtype, model_->device(), products);
  });
}

std::shared_ptr<SecondMomentAccumulator> SecondMomentsWrap::unwrap(const Napi::Value& value) {
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_data(value.Env()).second_moments.Value()))
    throw_invalid(value.Env(), "expected a NativeSecondMoments");
  return Unwrap(value.As<Napi::Object>())->require(value.Env());
}

std::shared_ptr<SecondMomentAccumulator> SecondMomentsWrap::require(Napi::Env env) const {
  if (!acc_) throw_disposed(env, "statistics");
  return acc_;
}

Napi::Value SecondMomentsWrap::load(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const std::string path = to_string(info[0], "path");
  auto model = HookedModelWrap::unwrap(info[1])->require_model(env);
  // a partial collection resumes with the products it was taken with
  const auto products = info.Length() > 2 ? get_accumulator_dtype(to_object(info[2], "options"), "products") : torch::kFloat64;
  return PromiseWorker<LoadedStats>::start(
      env, Napi::Object(),
      [path, model, products] {
        auto acc = std::make_shared<SecondMomentAccumulator>(
            SecondMomentAccumulator::load(path, model->info(), model->device(), products));
        return LoadedStats{model, acc};
      },
      [](Napi::Env env, LoadedStats& loaded) -> Napi::Value {
        return addon_data(env).second_moments.New({Napi::External<LoadedStats>::New(env, &loaded)});
      });
}

Napi::Value SecondMomentsWrap::add(const Napi::CallbackInfo& info) {
  auto rows = to_token_rows(info[0], "batch");
  return PromiseWorker<int64_t>::start(
      info.Env(), info.This().As<Napi::Object>(),
      [model = model_, acc = require(info.Env()), rows = std::move(rows)] {
        acc->add(*model, rows);
        return acc->count();
      },
      [](Napi::Env env, int64_t& count) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(count)); });
}

Napi::Value SecondMomentsWrap::save(const Napi::CallbackInfo& info) {
  const std::string path = to_string(info[0], "path");
  auto meta_obj = to_object(info[1], "metadata");
  std::map<std::string, std::string> metadata;
  auto keys = meta_obj.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string key = keys.Get(i).ToString().Utf8Value();
    metadata[key] = to_string(meta_obj.Get(key), "metadata." + key);
  }
  return PromiseWorker<bool>::start(
      info.Env(), info.This().As<Napi::Object>(),
      [acc = require(info.Env()), path, metadata] {
        acc->save(path, metadata);
        return true;
      },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

Napi::Value SecondMomentsWrap::mean(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsNumber()) throw_invalid(env, "mean expects a layer number");
  const int64_t layer = info[0].As<Napi::Number>().Int64Value();
  return PromiseWorker<torch::Tensor>::start(
      env, info.This().As<Napi::Object>(),
      [acc = require(env), layer] { return acc->mean_of_layer(layer); },
      [](Napi::Env env, torch::Tensor& t) -> Napi::Value { return to_js_tensor64(env, t); });
}

Napi::Value SecondMomentsWrap::count(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(require(info.Env())->count()));
}

Napi::Value SecondMomentsWrap::layers(const Napi::CallbackInfo& info) {
  return to_js_ints(info.Env(), require(info.Env())->layers());
}

// Frees the sums and lets go of the model; a call in flight keeps its own references and finishes.
Napi::Value SecondMomentsWrap::dispose(const Napi::CallbackInfo& info) {
  acc_.reset();
  model_.reset();
  return info.Env().Undefined();
}

}  // namespace comeba::binding
