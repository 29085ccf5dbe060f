// NativeConsecutiveEditor: the JS handle of an Editor (edit/editor.h). Creating one attaches its hooks to
// the model, so every later forward and generation of that model sees the edits; dispose() detaches them.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

#include "binding/worker.h"
#include "edit/editor.h"

namespace comeba::binding {

class EditorWrap final : public GuardedWrap<EditorWrap> {
 public:
  static void init(Napi::Env env, Napi::Object exports);
  explicit EditorWrap(const Napi::CallbackInfo& info);

 private:
  static Napi::Value create(const Napi::CallbackInfo& info);
  Napi::Value edit(const Napi::CallbackInfo& info);
  Napi::Value abort(const Napi::CallbackInfo& info);
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value export_merged(const Napi::CallbackInfo& info);
  Napi::Value state(const Napi::CallbackInfo& info);
  Napi::Value save(const Napi::CallbackInfo& info);
  Napi::Value load(const Napi::CallbackInfo& info);
  Napi::Value save_increment(const Napi::CallbackInfo& info);
  Napi::Value load_chain(const Napi::CallbackInfo& info);
  Napi::Value hold_keys(const Napi::CallbackInfo& info);
  Napi::Value checksum(const Napi::CallbackInfo& info);
  Napi::Value reset(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<Editor> require(Napi::Env env) const;

  std::shared_ptr<Editor> editor_;
  Napi::ObjectReference model_;                  // the NativeHookedModel it is attached to
  std::shared_ptr<std::atomic<bool>> abort_flag_;  // of the edit in flight
};

}  // namespace comeba::binding
