// models/config_json.h: typed reads of config.json fields with errors that name the field.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace kestrel {

// The first of `keys` present in `config` as an integer (or nullopt if none is present);
// throws Error(format) naming `where` and the key when the value has the wrong type.
std::optional<int64_t> json_int(const nlohmann::json& config, std::initializer_list<const char*> keys,
                                const std::string& where);
std::optional<double> json_number(const nlohmann::json& config, std::initializer_list<const char*> keys,
                                  const std::string& where);
std::optional<bool> json_bool(const nlohmann::json& config, const char* key, const std::string& where);
std::optional<std::string> json_string(const nlohmann::json& config, const char* key,
                                       const std::string& where);
// Like json_int, but the field must be present.
int64_t json_required_int(const nlohmann::json& config, std::initializer_list<const char*> keys,
                          const std::string& where);

}  // namespace kestrel
