#include "kestrel/error.h"

namespace kestrel {

const char* to_string(ErrorCategory category) noexcept {
  switch (category) {
    case ErrorCategory::invalid_argument: return "invalid argument";
    case ErrorCategory::io: return "i/o error";
    case ErrorCategory::format: return "format error";
    case ErrorCategory::unsupported: return "unsupported";
    case ErrorCategory::limit: return "limit exceeded";
    case ErrorCategory::device: return "device error";
    case ErrorCategory::internal: return "internal error";
  }
  return "error";
}

Error::Error(ErrorCategory category, const std::string& message)
    : std::runtime_error(std::string(to_string(category)) + ": " + message),
      category_(category),
      message_(message) {}

}  // namespace kestrel
