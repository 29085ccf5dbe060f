// NativeHookedModel: the JS handle of a loaded CausalLM. The model lives in a shared_ptr so that work in
// flight keeps it alive after dispose(); dispose() only drops the handle's own reference.
#pragma once

#include <napi.h>

#include <memory>

#include "binding/worker.h"
#include "edit/editor.h"
#include "models/causal_lm.h"

namespace comeba::binding {

class HookedModelWrap final : public GuardedWrap<HookedModelWrap> {
 public:
  static void init(Napi::Env env, Napi::Object exports);
  explicit HookedModelWrap(const Napi::CallbackInfo& info);

  // The wrap behind a JS handle; throws INVALID_ARGUMENT for anything else and DISPOSED after dispose().
  static HookedModelWrap* unwrap(const Napi::Value& value);
  std::shared_ptr<CausalLM> require_model(Napi::Env env) const;
  bool disposed() const { return !model_; }

  // The editor whose hooks every later forward and generation of this model goes through (null: none).
  void attach(std::shared_ptr<const Editor> editor) { editor_ = std::move(editor); }
  const std::shared_ptr<const Editor>& attached() const { return editor_; }

 private:
  static Napi::Value load(const Napi::CallbackInfo& info);
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value forward(const Napi::CallbackInfo& info);
  Napi::Value generate(const Napi::CallbackInfo& info);
  Napi::Value generate_greedy(const Napi::CallbackInfo& info);
  Napi::Value score_targets(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<CausalLM> model_;
  std::shared_ptr<const Editor> editor_;
  int64_t external_bytes_ = 0;  // reported to V8 so the GC sees the native weights
};

}  // namespace comeba::binding
