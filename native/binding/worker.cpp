#include "binding/worker.h"

#include <c10/util/Exception.h>

#include <new>

#include "common/error.h"

namespace comeba::binding {

std::optional<CaughtError> catch_all(const std::function<void()>& fn) {
  try {
    fn();
    return std::nullopt;
  } catch (...) {
    return caught_current();
  }
}

CaughtError caught_current() {
  try {
    throw;
  } catch (const comeba::Error& e) {
    return CaughtError{error_code_name(e.code()), e.what()};
  } catch (const c10::OutOfMemoryError& e) {
    return CaughtError{"OUT_OF_MEMORY", e.what_without_backtrace()};
  } catch (const c10::Error& e) {
    return CaughtError{"INTERNAL", std::string("libtorch: ") + e.what_without_backtrace()};
  } catch (const std::bad_alloc&) {
    return CaughtError{"OUT_OF_MEMORY", "out of host memory"};
  } catch (const std::exception& e) {
    return CaughtError{"INTERNAL", e.what()};
  } catch (...) {
    return CaughtError{"INTERNAL", "unknown native exception"};
  }
}

Napi::Error make_js_error(Napi::Env env, const CaughtError& error) {
  auto js = Napi::Error::New(env, error.message);
  js.Set("code", Napi::String::New(env, error.code));
  return js;
}

}  // namespace comeba::binding
