#include "binding/hooked_model_wrap.h"

#include <chrono>
#include <future>

#include "binding/addon_data.h"
#include "binding/convert.h"
#include "binding/worker.h"
#include "common/error.h"
#include "common/device.h"
#include "eval/metrics.h"
#include "models/inference.h"

namespace comeba::binding {
namespace {

// `decisions` of a generation (lib/model/types.ts): how validated hooks decide as the sequence grows.
bool settled_decisions(const Napi::Object& options) {
  const auto decisions = get_string(options, "decisions", "exact");
  if (decisions != "exact" && decisions != "settled")
    fail(ErrorCode::InvalidArgument, "decisions must be 'exact' or 'settled', not '" + decisions + "'");
  return decisions == "settled";
}

}  // namespace

void HookedModelWrap::init(Napi::Env env, Napi::Object exports) {
  auto cls = DefineClass(env, "NativeHookedModel",
                         {StaticMethod("load", &HookedModelWrap::guard_static<&HookedModelWrap::load>),
                          InstanceMethod("info", &HookedModelWrap::guard<&HookedModelWrap::info>),
                          InstanceMethod("forward", &HookedModelWrap::guard<&HookedModelWrap::forward>),
                          InstanceMethod("generate", &HookedModelWrap::guard<&HookedModelWrap::generate>),
                          InstanceMethod("generateGreedy", &HookedModelWrap::guard<&HookedModelWrap::generate_greedy>),
                          InstanceMethod("scoreTargets", &HookedModelWrap::guard<&HookedModelWrap::score_targets>),
                          InstanceMethod("dispose", &HookedModelWrap::guard<&HookedModelWrap::dispose>)});
  addon_data(env).hooked_model = Napi::Persistent(cls);
  exports.Set("NativeHookedModel", cls);
}

HookedModelWrap::HookedModelWrap(const Napi::CallbackInfo& info) : GuardedWrap<HookedModelWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw_invalid(info.Env(), "NativeHookedModel cannot be constructed directly; use NativeHookedModel.load()");
  model_ = *info[0].As<Napi::External<std::shared_ptr<CausalLM>>>().Data();
  external_bytes_ = 0;
  for (int64_t l = 0; l < model_->info().n_layer; ++l) {
    const auto& w = model_->edited_module(l).weight;
    external_bytes_ += w.numel() * w.element_size();
  }
  // The edited projections are about a third of a block's weights; report a model-sized estimate.
  external_bytes_ *= 3;
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), external_bytes_);
}

std::shared_ptr<CausalLM> HookedModelWrap::require_model(Napi::Env env) const {
  if (!model_) throw_disposed(env, "model");
  return model_;
}

HookedModelWrap* HookedModelWrap::unwrap(const Napi::Value& value) {
  auto env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_data(env).hooked_model.Value()))
    throw_invalid(env, "expected a NativeHookedModel");
  auto* wrap = Unwrap(value.As<Napi::Object>());
  wrap->require_model(env);
  return wrap;
}

Napi::Value HookedModelWrap::load(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const std::string dir = to_string(info[0], "dir");
  auto options = to_object(info[1], "options");
  const std::string device_name = get_string(options, "device", "cpu");
  const std::string dtype_name = get_string(options, "dtype", "float32");
  using Model = std::shared_ptr<CausalLM>;
  return PromiseWorker<Model>::start(
      env, Napi::Object(),
      [=]() -> Model { return load_causal_lm(dir, parse_device(device_name), parse_dtype(dtype_name)); },
      [](Napi::Env env, Model& model) -> Napi::Value {
        return addon_data(env).hooked_model.New({Napi::External<Model>::New(env, &model)});
      });
}

Napi::Value HookedModelWrap::info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = require_model(env);
  const auto& i = model->info();
  auto obj = Napi::Object::New(env);
  obj.Set("architecture", i.architecture);
  obj.Set("nLayer", static_cast<double>(i.n_layer));
  obj.Set("dModel", static_cast<double>(i.d_model));
  obj.Set("dFf", static_cast<double>(i.d_ff));
  obj.Set("nHead", static_cast<double>(i.n_head));
  obj.Set("vocabSize", static_cast<double>(i.vocab_size));
  obj.Set("contextLength", static_cast<double>(i.n_ctx));
  obj.Set("eosTokenId", static_cast<double>(i.eos_token_id));
  obj.Set("bosTokenId", static_cast<double>(i.bos_token_id));
  obj.Set("editedModule", i.edited_module);
  obj.Set("editedWeightShape", to_js_ints(env, model->edited_module(0).weight.sizes().vec()));
  obj.Set("device", model->device().str());
  obj.Set("dtype", dtype_name(model->dtype()));
  return obj;
}

Napi::Value HookedModelWrap::forward(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = require_model(env);
  auto rows = to_token_rows(info[0], "batch");
  auto options = to_object(info[1], "options");
  const std::string padding = get_string(options, "padding", "right");
  if (padding != "right" && padding != "left") throw_invalid(env, "padding must be 'right' or 'left', not '" + padding + "'");
  const std::string logits = get_string(options, "logits", "all");
  if (logits != "all" && logits != "last") throw_invalid(env, "logits must be 'all' or 'last', not '" + logits + "'");
  auto probes = to_probe_specs(options.Get("hooks"));
  return PromiseWorker<ForwardResult>::start(
      env, info.This().As<Napi::Object>(),
      [model, editor = editor_, rows = std::move(rows), left = padding == "left", probes = std::move(probes),
       last = logits == "last"]() mutable {
        auto base = editor ? editor->inference_hooks() : nullptr;
        return run_forward(*model, rows, left, std::move(probes), base.get(), last);
      },
      [](Napi::Env env, ForwardResult& result) -> Napi::Value {
        auto obj = to_js_tensor(env, result.logits);
        auto records = Napi::Array::New(env, result.records.size());
        for (size_t i = 0; i < result.records.size(); ++i)
          records.Set(i, result.records[i].defined() ? Napi::Value(to_js_tensor(env, result.records[i])) : env.Null());
        obj.Set("records", records);
        return obj;
      });
}

// generate(prompt, options, onToken?) → number[]. onToken(token) runs on the JS thread after each token while the
// generation waits for it: returning false stops it there (stop strings, AbortSignal, a stream's consumer gone).
Napi::Value HookedModelWrap::generate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = require_model(env);
  auto prompt = to_token_list(info[0], "prompt");
  auto options = to_object(info[1], "options");
  GenerateOptions gen;
  gen.max_new_tokens = require_int(options, "maxNewTokens");
  gen.stop_at_eos = get_bool(options, "stopAtEos", true);
  gen.top_k = get_int(options, "topK", 0);
  gen.top_p = get_double(options, "topP", 1);
  gen.temperature = get_double(options, "temperature", 0);
  gen.seed = static_cast<uint64_t>(get_int(options, "seed", 0));
  const bool settled = settled_decisions(options);
  if (info.Length() > 2 && info[2].IsFunction()) {
    auto tsfn = std::shared_ptr<Napi::ThreadSafeFunction>(
        new Napi::ThreadSafeFunction(Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "comeba-token", 0, 1)),
        [](Napi::ThreadSafeFunction* f) { f->Release(); delete f; });
    gen.on_token = [tsfn](int64_t token) {
      struct Call { int64_t token; std::promise<bool> go; };
      auto* call = new Call{token, {}};
      auto answer = call->go.get_future();
      auto status = tsfn->BlockingCall(call, [](Napi::Env env, Napi::Function fn, Call* c) {
        bool go = false;
        try {
          auto r = fn.Call({Napi::Number::New(env, static_cast<double>(c->token))});
          go = !(r.IsBoolean() && !r.As<Napi::Boolean>().Value());
        } catch (const Napi::Error&) {  // lib/model/HookedModel.ts catches its handlers' errors; stop on any other
        }
        c->go.set_value(go);
        delete c;
      });
      if (status != napi_ok) {
        delete call;
        return false;
      }
      // Bounded: an environment torn down drops queued calls without running them.
      return answer.wait_for(std::chrono::seconds(60)) == std::future_status::ready && answer.get();
    };
  }
  using Tokens = std::vector<int64_t>;
  return PromiseWorker<Tokens>::start(
      env, info.This().As<Napi::Object>(),
      [model, editor = editor_, prompt = std::move(prompt), gen, settled]() {
        auto hooks = editor ? editor->inference_hooks() : nullptr;
        if (hooks) hooks->track_sequence(settled);
        return comeba::generate(*model, prompt, gen, hooks.get());
      },
      [](Napi::Env env, Tokens& tokens) -> Napi::Value { return to_js_ints(env, tokens); });
}

// generateGreedy(prompts, maxNewTokens, { decisions }?) → number[][]: batched greedy continuations, through the
// attached editor.
Napi::Value HookedModelWrap::generate_greedy(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = require_model(env);
  auto prompts = to_token_rows(info[0], "prompts");
  auto lengths = to_token_list(info[1], "maxNewTokens");
  const bool settled = info.Length() > 2 && info[2].IsObject() && settled_decisions(info[2].As<Napi::Object>());
  return PromiseWorker<TokenRows>::start(
      env, info.This().As<Napi::Object>(),
      [model, editor = editor_, prompts = std::move(prompts), lengths = std::move(lengths), settled] {
        auto hooks = editor ? editor->inference_hooks() : nullptr;
        if (hooks) hooks->track_sequence(settled);
        return comeba::generate_greedy(*model, prompts, lengths, hooks.get());
      },
      [](Napi::Env env, TokenRows& rows) -> Napi::Value {
        auto out = Napi::Array::New(env, rows.size());
        for (size_t i = 0; i < rows.size(); ++i) out.Set(i, to_js_ints(env, rows[i]));
        return out;
      });
}

// scoreTargets(prompts, targets) → { argmax: number[][], meanNll: number[] }, through the attached editor.
Napi::Value HookedModelWrap::score_targets(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto model = require_model(env);
  auto prompts = to_token_rows(info[0], "prompts");
  auto targets = to_token_rows(info[1], "targets");
  return PromiseWorker<TargetScores>::start(
      env, info.This().As<Napi::Object>(),
      [model, editor = editor_, prompts = std::move(prompts), targets = std::move(targets)] {
        auto hooks = editor ? editor->inference_hooks() : nullptr;
        return comeba::score_targets(*model, prompts, targets, hooks.get());
      },
      [](Napi::Env env, TargetScores& scores) -> Napi::Value {
        auto obj = Napi::Object::New(env);
        auto argmax = Napi::Array::New(env, scores.argmax.size());
        for (size_t i = 0; i < scores.argmax.size(); ++i) argmax.Set(i, to_js_ints(env, scores.argmax[i]));
        obj.Set("argmax", argmax);
        obj.Set("meanNll", to_js_doubles(env, scores.mean_nll));
        return obj;
      });
}

Napi::Value HookedModelWrap::dispose(const Napi::CallbackInfo& info) {
  if (model_) {
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -external_bytes_);
    model_.reset();
    editor_.reset();
  }
  return info.Env().Undefined();
}

}  // namespace comeba::binding
