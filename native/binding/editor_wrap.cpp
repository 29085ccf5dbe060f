#include "binding/editor_wrap.h"

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "binding/addon_data.h"
#include "binding/convert.h"
#include "binding/hooked_model_wrap.h"
#include "binding/stats_wrap.h"
#include "binding/worker.h"
#include "edit/export.h"
#include "common/error.h"
#include "edit/state_file.h"

namespace comeba::binding {
namespace {

// Every hyperparameter comes resolved from lib/edit/options.ts, the one table of their defaults.
EditorOptions to_editor_options(const Napi::Object& o) {
  EditorOptions opts;
  opts.mode = run_sync(o.Env(), [&] { return parse_edit_mode(require_string(o, "mode")); });
  opts.layers = to_token_list(o.Get("layers"), "layers");
  opts.lambda = require_double(o, "lambda");
  opts.alpha_z = require_double(o, "alphaZ");
  opts.scope = run_sync(o.Env(), [&] { return parse_scope(require_string(o, "scope")); });
  opts.scope_kappa = require_double(o, "scopeKappa");
  opts.alpha_floor = require_double(o, "alphaFloor");
  opts.values.steps = require_int(o, "vSteps");
  opts.values.lr = require_double(o, "vLr");
  opts.values.weight_decay = require_double(o, "vWeightDecay");
  opts.values.kl_factor = require_double(o, "klFactor");
  opts.values.clamp_norm_factor = require_double(o, "clampNormFactor");
  opts.values.early_stop_loss = require_double(o, "earlyStopLoss");
  opts.values.reuse_prefix = get_bool(o, "reusePrefix", opts.values.reuse_prefix);
  opts.accumulator_dtype = get_accumulator_dtype(o, "accumulatorDtype");
  opts.accumulator_on_host = get_bool(o, "accumulatorOnHost", opts.accumulator_on_host);
  opts.reedit = run_sync(o.Env(), [&] { return parse_reedit(require_string(o, "reedit")); });
  opts.reedit_threshold = require_double(o, "reeditThreshold");
  return opts;
}

std::vector<EditRequest> to_requests(const Napi::Value& value) {
  if (!value.IsArray()) throw_invalid(value.Env(), "expected an array of prepared requests");
  auto arr = value.As<Napi::Array>();
  std::vector<EditRequest> requests;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string what = "requests[" + std::to_string(i) + "]";
    auto o = to_object(arr.Get(i), what);
    EditRequest r;
    r.contexts = to_token_rows(o.Get("contexts"), what + ".contexts");
    r.subject_last = to_token_list(o.Get("subjectLast"), what + ".subjectLast");
    r.target = to_token_list(o.Get("target"), what + ".target");
    r.kl_row = to_token_list(o.Get("klRow"), what + ".klRow");
    r.kl_subject_last = get_int(o, "klSubjectLast", -1);
    if (o.Has("keep") && !o.Get("keep").IsUndefined()) {
      if (!o.Get("keep").IsArray()) throw_invalid(value.Env(), what + ".keep must be an array");
      auto keep = o.Get("keep").As<Napi::Array>();
      for (uint32_t k = 0; k < keep.Length(); ++k) {
        const std::string kw = what + ".keep[" + std::to_string(k) + "]";
        auto ko = to_object(keep.Get(k), kw);
        r.keep.push_back({to_token_list(ko.Get("row"), kw + ".row"), get_int(ko, "subjectLast", -1), to_token_list(ko.Get("target"), kw + ".target")});
      }
    }
    requests.push_back(std::move(r));
  }
  return requests;
}

Napi::Object to_js_report(Napi::Env env, const EditReport& report) {
  auto obj = Napi::Object::New(env);
  obj.Set("step", Napi::Number::New(env, static_cast<double>(report.step)));
  auto layers = Napi::Array::New(env, report.layers.size());
  for (size_t i = 0; i < report.layers.size(); ++i) {
    const auto& l = report.layers[i];
    auto lo = Napi::Object::New(env);
    lo.Set("layer", Napi::Number::New(env, static_cast<double>(l.layer)));
    lo.Set("residualBefore", l.residual_before);
    lo.Set("residualAfter", l.residual_after);
    lo.Set("alphaBefore", l.alpha_before);
    lo.Set("alphaAfter", l.alpha_after);
    lo.Set("jitter", l.jitter);
    if (l.keys.defined()) {
      lo.Set("keys", to_js_tensor64(env, l.keys));
      lo.Set("residual", to_js_tensor64(env, l.residual));
      lo.Set("delta", to_js_tensor64(env, l.delta));
    }
    layers.Set(i, lo);
  }
  obj.Set("layers", layers);
  auto values = Napi::Object::New(env);
  values.Set("firstLoss", to_js_doubles(env, report.values.first_loss));
  values.Set("finalLoss", to_js_doubles(env, report.values.final_loss));
  std::vector<double> steps(report.values.steps.begin(), report.values.steps.end());
  values.Set("steps", to_js_doubles(env, steps));
  // With capture (the layers carry K, R, ΔW_batch): the target values too.
  if (!report.layers.empty() && report.layers[0].keys.defined()) values.Set("z", to_js_tensor64(env, report.values.z));
  obj.Set("values", values);
  auto seconds = Napi::Object::New(env);
  seconds.Set("values", report.seconds_values);
  seconds.Set("keys", report.seconds_keys);
  seconds.Set("solves", report.seconds_solves);
  seconds.Set("alpha", report.seconds_alpha);
  seconds.Set("total", report.seconds_total);
  obj.Set("seconds", seconds);
  return obj;
}

struct ProgressEvent {
  std::string phase;
  double done;
};

// Progress events queued for the JS thread and not yet handled; the edit waits for none before it commits.
struct ProgressQueue {
  std::mutex mutex;
  std::condition_variable handled;
  int64_t pending = 0;

  void add() {
    std::lock_guard lock(mutex);
    ++pending;
  }
  void done() {
    std::lock_guard lock(mutex);
    --pending;
    handled.notify_all();
  }
  // Bounded: a torn-down environment drops its queued calls without running them.
  void drain() {
    std::unique_lock lock(mutex);
    handled.wait_for(lock, std::chrono::seconds(60), [this] { return pending == 0; });
  }
};

}  // namespace

void EditorWrap::init(Napi::Env env, Napi::Object exports) {
  auto cls = DefineClass(env, "NativeConsecutiveEditor",
                         {StaticMethod("create", &EditorWrap::guard_static<&EditorWrap::create>),
                          InstanceMethod("edit", &EditorWrap::guard<&EditorWrap::edit>),
                          InstanceMethod("abort", &EditorWrap::guard<&EditorWrap::abort>),
                          InstanceMethod("info", &EditorWrap::guard<&EditorWrap::info>),
                          InstanceMethod("state", &EditorWrap::guard<&EditorWrap::state>),
                          InstanceMethod("save", &EditorWrap::guard<&EditorWrap::save>),
                          InstanceMethod("exportMerged", &EditorWrap::guard<&EditorWrap::export_merged>),
                          InstanceMethod("load", &EditorWrap::guard<&EditorWrap::load>),
                          InstanceMethod("saveIncrement", &EditorWrap::guard<&EditorWrap::save_increment>),
                          InstanceMethod("loadChain", &EditorWrap::guard<&EditorWrap::load_chain>),
                          InstanceMethod("holdKeys", &EditorWrap::guard<&EditorWrap::hold_keys>),
                          InstanceMethod("checksum", &EditorWrap::guard<&EditorWrap::checksum>),
                          InstanceMethod("reset", &EditorWrap::guard<&EditorWrap::reset>),
                          InstanceMethod("dispose", &EditorWrap::guard<&EditorWrap::dispose>)});
  addon_data(env).editor = Napi::Persistent(cls);
  exports.Set("NativeConsecutiveEditor", cls);
}

EditorWrap::EditorWrap(const Napi::CallbackInfo& info) : GuardedWrap<EditorWrap>(info) {
  if (info.Length() != 2 || !info[0].IsExternal() || !info[1].IsObject())
    throw_invalid(info.Env(), "NativeConsecutiveEditor cannot be constructed directly; use NativeConsecutiveEditor.create()");
  editor_ = *info[0].As<Napi::External<std::shared_ptr<Editor>>>().Data();
  model_ = Napi::Persistent(info[1].As<Napi::Object>());
}

std::shared_ptr<Editor> EditorWrap::require(Napi::Env env) const {
  if (!editor_) throw_disposed(env, "editor");
  // An editor outlives its model only as a handle: without the model it can neither edit nor save.
  if (!model_.IsEmpty() && Napi::ObjectWrap<HookedModelWrap>::Unwrap(model_.Value())->disposed())
    throw_disposed(env, "model of this editor");
  return editor_;
}

// create(model, stats, options) → Promise<NativeConsecutiveEditor>, attached to the model.
Napi::Value EditorWrap::create(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto* model_wrap = HookedModelWrap::unwrap(info[0]);
  if (model_wrap->attached())
    throw_invalid(env, "this model already has an editor attached; dispose that editor first");
  auto model = model_wrap->require_model(env);
  auto stats = SecondMomentsWrap::unwrap(info[1]);
  auto options = to_editor_options(to_object(info[2], "options"));
  using Ptr = std::shared_ptr<Editor>;
  auto model_obj = info[0].As<Napi::Object>();
  return PromiseWorker<Ptr>::start(
      env, model_obj,
      [model, stats, options] {
        std::vector<torch::Tensor> moments;
        for (int64_t layer : options.layers) moments.push_back(stats->mean_of_layer(layer));
        return std::make_shared<Editor>(model, options, std::move(moments));
      },
      [model_wrap, model_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(model_obj))](
          Napi::Env env, Ptr& editor) -> Napi::Value {
        if (model_wrap->attached()) throw_invalid(env, "this model already has an editor attached; dispose that editor first");
        model_wrap->attach(editor);
        return addon_data(env).editor.New({Napi::External<Ptr>::New(env, &editor), model_ref->Value()});
      });
}

Napi::Value EditorWrap::edit(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto editor = require(env);
  auto requests = to_requests(info[0]);
  auto options = to_object(info[1], "options");
  EditControl control;
  control.capture = get_bool(options, "capture", false);
  control.fail_after_layer = get_int(options, "failAfterLayer", -1);
  auto flag = std::make_shared<std::atomic<bool>>(false);
  abort_flag_ = flag;
  control.aborted = [flag] { return flag->load(); };
  std::shared_ptr<Napi::ThreadSafeFunction> tsfn;
  if (info[2].IsFunction()) {
    tsfn = std::shared_ptr<Napi::ThreadSafeFunction>(
        new Napi::ThreadSafeFunction(Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "comeba-progress", 0, 1)),
        [](Napi::ThreadSafeFunction* f) { f->Release(); delete f; });
    auto queue = std::make_shared<ProgressQueue>();
    control.progress = [tsfn, queue](const std::string& phase, double done) {
      auto* event = new ProgressEvent{phase, done};
      queue->add();
      auto status = tsfn->NonBlockingCall(event, [queue](Napi::Env env, Napi::Function fn, ProgressEvent* e) {
        // lib/edit/ConsecutiveEditor.ts catches the handler's exceptions and aborts the edit; one that still
        // arrives here must not become an uncaught exception of the process.
        try {
          fn.Call({Napi::String::New(env, e->phase), Napi::Number::New(env, e->done)});
        } catch (const Napi::Error&) {
        }
        delete e;
        queue->done();
      });
      if (status != napi_ok) {
        delete event;
        queue->done();
      }
    };
    control.before_commit = [queue] { queue->drain(); };
  }
  return PromiseWorker<EditReport>::start(
      env, info.This().As<Napi::Object>(),
      [editor, requests = std::move(requests), control]() { return editor->edit(requests, control); },
      [tsfn](Napi::Env env, EditReport& report) -> Napi::Value { return to_js_report(env, report); });
}

Napi::Value EditorWrap::abort(const Napi::CallbackInfo& info) {
  if (abort_flag_) abort_flag_->store(true);
  return info.Env().Undefined();
}

Napi::Value EditorWrap::info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto editor = require(env);
  auto obj = Napi::Object::New(env);
  obj.Set("mode", edit_mode_name(editor->options().mode));
  obj.Set("layers", to_js_ints(env, editor->options().layers));
  obj.Set("step", Napi::Number::New(env, static_cast<double>(editor->step())));
  obj.Set("scope", scope_name(editor->options().scope));
  std::vector<double> alphas, floors;
  for (const auto& s : editor->state()) {
    alphas.push_back(s.alpha);
    floors.push_back(s.floor);
  }
  obj.Set("alphas", to_js_doubles(env, alphas));
  obj.Set("scopeFloors", to_js_doubles(env, floors));
  return obj;
}

Napi::Value EditorWrap::state(const Napi::CallbackInfo& info) {
  auto editor = require(info.Env());
  using State = std::pair<std::vector<LayerState>, int64_t>;
  return PromiseWorker<State>::start(
      info.Env(), info.This().As<Napi::Object>(),
      [editor] {
        // Copies: the JS arrays must not alias tensors that later batches update in place.
        auto layers = editor->state();
        for (auto& s : layers) {
          s.delta = s.delta.clone();
          if (s.c_accu.defined()) s.c_accu = s.c_accu.clone();
        }
        return State{std::move(layers), editor->step()};
      },
      [](Napi::Env env, State& state) -> Napi::Value {
        auto obj = Napi::Object::New(env);
        obj.Set("step", Napi::Number::New(env, static_cast<double>(state.second)));
        auto layers = Napi::Array::New(env, state.first.size());
        for (size_t i = 0; i < state.first.size(); ++i) {
          const auto& s = state.first[i];
          auto lo = Napi::Object::New(env);
          lo.Set("layer", Napi::Number::New(env, static_cast<double>(s.layer)));
          lo.Set("alpha", s.alpha);
          lo.Set("delta", to_js_tensor(env, s.delta));
          lo.Set("cAccu", s.c_accu.defined() ? Napi::Value(to_js_tensor64(env, s.c_accu)) : env.Null());
          lo.Set("history", s.history.defined() ? Napi::Value(to_js_tensor64(env, s.history)) : env.Null());
          layers.Set(i, lo);
        }
        obj.Set("layers", layers);
        return obj;
      });
}

Napi::Value EditorWrap::save(const Napi::CallbackInfo& info) {
  auto editor = require(info.Env());
  const std::string path = to_string(info[0], "path");
  return PromiseWorker<int64_t>::start(
      info.Env(), info.This().As<Napi::Object>(), [editor, path] { return save_editor_state(*editor, path); },
      [](Napi::Env env, int64_t& bytes) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(bytes)); });
}

// exportMerged([{ source, target, merged: [{ tensor, layerIndex, transposed }] }]) → bytes of tensor data written
Napi::Value EditorWrap::export_merged(const Napi::CallbackInfo& info) {
  auto editor = require(info.Env());
  if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "exportMerged expects a list of files");
  auto list = info[0].As<Napi::Array>();
  std::vector<ExportFile> files;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    auto o = to_object(list.Get(i), "file");
    ExportFile file{require_string(o, "source"), require_string(o, "target"), {}};
    if (!o.Get("merged").IsArray()) throw Napi::TypeError::New(info.Env(), "merged must be a list");
    auto merged = o.Get("merged").As<Napi::Array>();
    for (uint32_t j = 0; j < merged.Length(); ++j) {
      auto m = to_object(merged.Get(j), "merged weight");
      file.merged.push_back({require_string(m, "tensor"), require_int(m, "layerIndex"), get_bool(m, "transposed", false)});
    }
    files.push_back(std::move(file));
  }
  return PromiseWorker<int64_t>::start(
      info.Env(), info.This().As<Napi::Object>(), [editor, files] { return comeba::export_merged(*editor, files); },
      [](Napi::Env env, int64_t& bytes) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(bytes)); });
}

Napi::Value EditorWrap::load(const Napi::CallbackInfo& info) {
  auto editor = require(info.Env());
  const std::string path = to_string(info[0], "path");
  return PromiseWorker<int64_t>::start(
      info.Env(), info.This().As<Napi::Object>(), [editor, path] { return load_editor_state(*editor, path); },
      [](Napi::Env env, int64_t& step) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(step)); });
}

// saveIncrement(keysPath, deltaPath, fromStep) → bytes written
Napi::Value EditorWrap::save_increment(const Napi::CallbackInfo& info) {
  auto editor = require(info.Env());
  const std::string keys = to_string(info[0], "keysPath"), delta = to_string(info[1], "deltaPath");
  if (!info[2].IsNumber()) throw_invalid(info.Env(), "fromStep must be a number");
  const int64_t from = info[2].As<Napi::Number>().Int64Value();
  return PromiseWorker<int64_t>::start(
      info.Env(), info.This().As<Napi::Object>(), [editor, keys, delta, from] { return save_editor_increment(*editor, keys, delta, from); },
      [](Napi::Env env, int64_t& bytes) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(bytes)); });
}

// loadChain(basePath, keysPaths, deltaPath) → step
Napi::Value EditorWrap::load_chain(const Napi::CallbackInfo& info) {
  auto editor = require(info.Env());
  const std::string base = to_string(info[0], "basePath"), delta = to_string(info[2], "deltaPath");
  if (!info[1].IsArray()) throw_invalid(info.Env(), "keysPaths must be an array of paths");
  std::vector<std::string> keys;
  auto list = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) keys.push_back(to_string(list.Get(i), "keysPaths[" + std::to_string(i) + "]"));
  return PromiseWorker<int64_t>::start(
      info.Env(), info.This().As<Napi::Object>(), [editor, base, keys, delta] { return load_editor_chain(*editor, base, keys, delta); },
      [](Napi::Env env, int64_t& step) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(step)); });
}

// holdKeys(afterStep | null): keep each committed batch's keys after afterStep for incremental saves; null stops.
Napi::Value EditorWrap::hold_keys(const Napi::CallbackInfo& info) {
  auto editor = require(info.Env());
  if (!info[0].IsNull() && !info[0].IsNumber()) throw_invalid(info.Env(), "holdKeys takes a step or null");
  const int64_t after = info[0].IsNull() ? -1 : info[0].As<Napi::Number>().Int64Value();
  return PromiseWorker<int64_t>::start(
      info.Env(), info.This().As<Napi::Object>(),
      [editor, after] {
        if (after < 0) editor->stop_holding_keys();
        else editor->hold_keys_after(after);
        return after;
      },
      [](Napi::Env env, int64_t&) -> Napi::Value { return env.Undefined(); });
}

Napi::Value EditorWrap::checksum(const Napi::CallbackInfo& info) {
  auto editor = require(info.Env());
  return PromiseWorker<std::string>::start(
      info.Env(), info.This().As<Napi::Object>(), [editor] { return editor_state_checksum(*editor); },
      [](Napi::Env env, std::string& sum) -> Napi::Value { return Napi::String::New(env, sum); });
}

Napi::Value EditorWrap::reset(const Napi::CallbackInfo& info) {
  auto editor = require(info.Env());
  return PromiseWorker<bool>::start(
      info.Env(), info.This().As<Napi::Object>(),
      [editor] {
        editor->reset();
        return true;
      },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

Napi::Value EditorWrap::dispose(const Napi::CallbackInfo& info) {
  if (editor_) {
    if (!model_.IsEmpty()) {
      auto model = model_.Value();
      auto* wrap = Napi::ObjectWrap<HookedModelWrap>::Unwrap(model);
      if (wrap && wrap->attached() == editor_) wrap->attach(nullptr);
    }
    editor_.reset();  // an edit in flight keeps its own reference and finishes
  }
  return info.Env().Undefined();
}

}  // namespace comeba::binding
