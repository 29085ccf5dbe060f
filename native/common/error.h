// The one exception type that comeba's core throws. The binding maps `code` onto the typed JS errors of
// lib/errors.ts; anything else that escapes (c10::Error, std::bad_alloc) is mapped there as well.
#pragma once

#include <stdexcept>
#include <string>

namespace comeba {

enum class ErrorCode {
  InvalidArgument,
  InvalidCheckpoint,
  UnsupportedArchitecture,
  DeviceUnavailable,
  Aborted,
  NumericalFailure,
  NoSpace,
  Internal,
};

inline const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::InvalidCheckpoint: return "INVALID_CHECKPOINT";
    case ErrorCode::UnsupportedArchitecture: return "UNSUPPORTED_ARCHITECTURE";
    case ErrorCode::DeviceUnavailable: return "DEVICE_UNAVAILABLE";
    case ErrorCode::Aborted: return "ABORTED";
    case ErrorCode::NumericalFailure: return "NUMERICAL_FAILURE";
    case ErrorCode::NoSpace: return "NO_SPACE";
    case ErrorCode::Internal: return "INTERNAL";
  }
  return "INTERNAL";
}

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

}  // namespace comeba
