#include "models/config_json.h"

#include "kestrel/error.h"

namespace kestrel {

namespace {
[[noreturn]] void wrong_type(const std::string& where, const char* key, const char* expected) {
  throw Error(ErrorCategory::format, where + ": field '" + key + "' must be " + expected);
}
}  // namespace

std::optional<int64_t> json_int(const nlohmann::json& config, std::initializer_list<const char*> keys,
                                const std::string& where) {
  for (const char* key : keys) {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) continue;
    if (!it->is_number_integer()) wrong_type(where, key, "an integer");
    return it->get<int64_t>();
  }
  return std::nullopt;
}

std::optional<double> json_number(const nlohmann::json& config, std::initializer_list<const char*> keys,
                                  const std::string& where) {
  for (const char* key : keys) {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) continue;
    if (!it->is_number()) wrong_type(where, key, "a number");
    return it->get<double>();
  }
  return std::nullopt;
}

std::optional<bool> json_bool(const nlohmann::json& config, const char* key, const std::string& where) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) wrong_type(where, key, "true or false");
  return it->get<bool>();
}

std::optional<std::string> json_string(const nlohmann::json& config, const char* key,
                                       const std::string& where) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) wrong_type(where, key, "a string");
  return it->get<std::string>();
}

int64_t json_required_int(const nlohmann::json& config, std::initializer_list<const char*> keys,
                          const std::string& where) {
  if (auto v = json_int(config, keys, where)) return *v;
  throw Error(ErrorCategory::format, where + ": missing field '" + std::string(*keys.begin()) + "'");
}

}  // namespace kestrel
