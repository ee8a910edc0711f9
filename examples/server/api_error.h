// server/api_error.h: an OpenAI-style error: the HTTP status and the body
// {"error": {"message", "type", "param", "code"}} that the official clients parse.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace kestrel_server {

class ApiError : public std::runtime_error {
 public:
  // `param`: the request field at fault (empty: none); `code`: a machine-readable reason.
  ApiError(int status, const std::string& message, std::string param = {}, std::string code = {})
      : std::runtime_error(message), status_(status), param_(std::move(param)), code_(std::move(code)) {}
  int status() const { return status_; }
  nlohmann::json body() const { return body_for(status_, what(), param_, code_); }

  static nlohmann::json body_for(int status, const std::string& message, const std::string& param = {},
                                 const std::string& code = {}) {
    const char* type = status == 503 ? "overloaded_error" : status >= 500 ? "server_error" : "invalid_request_error";
    nlohmann::json error = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
    if (!param.empty()) error["param"] = param;
    if (!code.empty()) error["code"] = code;
    return {{"error", error}};
  }

 private:
  int status_;
  std::string param_;
  std::string code_;
};

// A 400 naming the request field at fault.
[[noreturn]] inline void refuse(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param, "invalid_value");
}

// The field's value if present and not null (a request object's keys, in either json kind).
template <class Json>
const Json* field(const Json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace kestrel_server
