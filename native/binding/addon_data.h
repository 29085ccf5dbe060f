// Per-environment state of the addon: the constructors of the native classes, so that objects created
// in a worker's completion (load, create) get the right prototype in every JS thread that loads the addon.
#pragma once

#include <napi.h>

namespace comeba::binding {

struct AddonData {
  Napi::FunctionReference hooked_model;
  Napi::FunctionReference second_moments;
  Napi::FunctionReference editor;
};

inline AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace comeba::binding
