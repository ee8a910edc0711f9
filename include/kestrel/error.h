// kestrel/error.h: the one error type every part of Kestrel throws.
#pragma once

#include <stdexcept>
#include <string>

namespace kestrel {

// What kind of thing went wrong; lets an application react without parsing messages.
enum class ErrorCategory {
  invalid_argument,  // an option or argument out of range (the message names it)
  io,                // a file is missing, unreadable or truncated (names the file)
  format,            // a file's contents are malformed or unsupported (names file / tensor)
  unsupported,       // a valid request this build or model cannot serve
  limit,             // a session limit was hit: prompt too long, KV cache exhausted
  device,            // a CUDA / driver / library failure
  internal,          // a broken invariant: a bug in Kestrel
};

const char* to_string(ErrorCategory category) noexcept;

// Thrown by every public call. what() is "<category>: <message>"; the message names the
// file, tensor, option or limit at fault.
class Error : public std::runtime_error {
 public:
  Error(ErrorCategory category, const std::string& message);
  ErrorCategory category() const noexcept { return category_; }
  // The message without the category prefix.
  const std::string& message() const noexcept { return message_; }

 private:
  ErrorCategory category_;
  std::string message_;
};

}  // namespace kestrel
