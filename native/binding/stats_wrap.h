// NativeSecondMoments: the JS handle of a running E[kkᵀ] accumulation (stats/covariance.h).
#pragma once

#include <napi.h>

#include <memory>

#include "binding/worker.h"
#include "models/causal_lm.h"
#include "stats/covariance.h"

namespace comeba::binding {

class SecondMomentsWrap final : public GuardedWrap<SecondMomentsWrap> {
 public:
  static void init(Napi::Env env, Napi::Object exports);
  // new NativeSecondMoments(model, { layers, dtype }) or, internally, from a loaded accumulator.
  explicit SecondMomentsWrap(const Napi::CallbackInfo& info);

  static std::shared_ptr<SecondMomentAccumulator> unwrap(const Napi::Value& value);

 private:
  static Napi::Value load(const Napi::CallbackInfo& info);
  Napi::Value add(const Napi::CallbackInfo& info);
  Napi::Value save(const Napi::CallbackInfo& info);
  Napi::Value mean(const Napi::CallbackInfo& info);
  Napi::Value count(const Napi::CallbackInfo& info);
  Napi::Value layers(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<SecondMomentAccumulator> require(Napi::Env env) const;

  std::shared_ptr<CausalLM> model_;
  std::shared_ptr<SecondMomentAccumulator> acc_;
};

}  // namespace comeba::binding
