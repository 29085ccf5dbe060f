// NativeHookedModel: the JS handle of a loaded CausalLM. The model lives in a shared_ptr so that work in
// flight keeps it alive after dispose(); dispose() only drops the handle's own reference.
#pragma once

#include <napi.h>

#include <memory>

#include "models/causal_lm.h"

namespace comeba::binding {

class HookedModelWrap final : public Napi::ObjectWrap<HookedModelWrap> {
 public:
  static void init(Napi::Env env, Napi::Object exports);
  explicit HookedModelWrap(const Napi::CallbackInfo& info);

  // The model behind a JS handle, or a DISPOSED error. Used by other wraps that take a model argument.
  static std::shared_ptr<CausalLM> model_of(const Napi::Value& value);

 private:
  static Napi::Value load(const Napi::CallbackInfo& info);
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value forward(const Napi::CallbackInfo& info);
  Napi::Value generate(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<CausalLM> require_model(Napi::Env env) const;

  std::shared_ptr<CausalLM> model_;
  int64_t external_bytes_ = 0;  // reported to V8 so the GC sees the native weights
};

}  // namespace comeba::binding
