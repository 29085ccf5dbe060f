// The one way heavy work crosses into JS: a Promise whose work runs on libuv's pool and whose result is
// converted on the main thread. The owner object is pinned until the worker is gone, so a model cannot
// be collected mid-call. Every exception becomes a JS Error with a `.code` here, and nowhere else.
#pragma once

#include <napi.h>

#include <functional>
#include <optional>
#include <string>

namespace comeba::binding {

// Runs `fn`, mapping whatever it throws to (code, message). Used by async and sync entry points alike.
struct CaughtError {
  std::string code;
  std::string message;
};
std::optional<CaughtError> catch_all(const std::function<void()>& fn);
// Inside a catch block: the (code, message) of the exception being handled.
CaughtError caught_current();

Napi::Error make_js_error(Napi::Env env, const CaughtError& error);

// The error boundary of every JS-thread entry point: Napi errors pass through, any other exception (a
// comeba::Error, a c10::Error from a tensor op on JS input, bad_alloc) becomes the JS error for its code
// instead of terminating the process.
template <typename Fn>
auto js_boundary(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_js_error(env, caught_current());
  }
}

// Base of the ObjectWraps: `guard<&T::method>` registers a method behind js_boundary.
template <typename T>
class GuardedWrap : public Napi::ObjectWrap<T> {
 public:
  using Napi::ObjectWrap<T>::ObjectWrap;

 protected:
  template <Napi::Value (T::*Method)(const Napi::CallbackInfo&)>
  Napi::Value guard(const Napi::CallbackInfo& info) {
    return js_boundary(info.Env(), [&] { return (static_cast<T*>(this)->*Method)(info); });
  }
  template <Napi::Value (*Function)(const Napi::CallbackInfo&)>
  static Napi::Value guard_static(const Napi::CallbackInfo& info) {
    return js_boundary(info.Env(), [&] { return Function(info); });
  }
};

// For synchronous methods: runs `fn` and throws the mapped JS error on failure.
template <typename Fn>
auto run_sync(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  std::optional<decltype(fn())> result;
  if (auto error = catch_all([&] { result.emplace(fn()); })) throw make_js_error(env, *error);
  return std::move(*result);
}

template <typename Result>
class PromiseWorker final : public Napi::AsyncWorker {
 public:
  using Work = std::function<Result()>;
  using Convert = std::function<Napi::Value(Napi::Env, Result&)>;

  // Queues the work and returns its promise. `owner` may be empty (static functions).
  static Napi::Promise start(Napi::Env env, Napi::Object owner, Work work, Convert convert) {
    auto* worker = new PromiseWorker(env, owner, std::move(work), std::move(convert));  // freed by N-API
    auto promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    error_ = catch_all([this] { result_.emplace(work_()); });
    if (error_) SetError(error_->message);
  }

  void OnOK() override {
    Napi::HandleScope scope(Env());
    Napi::Value value;
    try {
      value = convert_(Env(), *result_);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
      return;
    } catch (...) {  // e.g. out of memory while copying a result out
      deferred_.Reject(make_js_error(Env(), caught_current()).Value());
      return;
    }
    deferred_.Resolve(value);
  }

  void OnError(const Napi::Error&) override {
    Napi::HandleScope scope(Env());
    deferred_.Reject(make_js_error(Env(), *error_).Value());
  }

 private:
  PromiseWorker(Napi::Env env, Napi::Object owner, Work work, Convert convert)
      : Napi::AsyncWorker(env, "comeba"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), convert_(std::move(convert)) {
    if (!owner.IsEmpty()) owner_ = Napi::Persistent(owner);
  }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference owner_;
  Work work_;
  Convert convert_;
  std::optional<Result> result_;
  std::optional<CaughtError> error_;
};

}  // namespace comeba::binding
