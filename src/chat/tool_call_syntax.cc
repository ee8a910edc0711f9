#include "chat/tool_call_syntax.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "core/json_depth.h"

namespace kestrel::chat {

namespace {

// Ordered: the arguments keep the model's key order.
using json = nlohmann::ordered_json;

// nlohmann parses recursively: text nested deeper than this is not taken for a call
// (a model's reply must not be able to exhaust the stack).
constexpr int kMaxNesting = 64;

std::optional<json> parse_json(std::string_view text) {
  if (json_nesting_depth(text) > kMaxNesting) return std::nullopt;
  json value = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::nullopt;
  return value;
}

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::optional<ParsedCall> call_of(const json& object, std::string_view arguments_key, std::string_view also_key,
                                  bool allow_id) {
  if (!object.is_object()) return std::nullopt;
  ParsedCall call;
  const std::string key(arguments_key), also(also_key);
  for (const auto& [k, v] : object.items()) {
    if (k == "name") {
      if (!v.is_string() || v.get<std::string>().empty()) return std::nullopt;
      call.name = v.get<std::string>();
    } else if (k == key || (!also.empty() && k == also)) {
      if (!v.is_object()) return std::nullopt;
      call.arguments = dump(v);
    } else if (k == "type") {
      if (v != "function") return std::nullopt;
    } else if (k == "id" && allow_id) {
      if (!v.is_string()) return std::nullopt;
      call.id = v.get<std::string>();
    } else {
      return std::nullopt;  // an unknown shape stays content
    }
  }
  if (call.name.empty() || call.arguments.empty()) return std::nullopt;
  return call;
}

bool is_identifier_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// A function name as models write them: letters, digits, '_', '-' and '.' (OpenAI allows
// [a-zA-Z0-9_-]; MCP tool names add dots).
bool is_function_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name)
    if (!is_identifier_char(c) && c != '-' && c != '.') return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// One value of a built-in call's argument list, starting at text[i]: a JSON string, number
// or literal, or Python's True / False / None. Advances i past it.
std::optional<json> python_value(std::string_view text, size_t& i) {
  const size_t start = i;
  if (text[i] == '"') {
    for (++i; i < text.size() && text[i] != '"'; ++i)
      if (text[i] == '\\') ++i;
    if (i >= text.size()) return std::nullopt;
    ++i;
    return parse_json(text.substr(start, i - start));
  }
  while (i < text.size() && text[i] != ',' && text[i] != ')') ++i;
  const std::string_view word = trim(text.substr(start, i - start));
  if (word == "True") return json(true);
  if (word == "False") return json(false);
  if (word == "None") return json(nullptr);
  std::optional<json> value = parse_json(word);
  if (!value || value->is_structured() || value->is_string()) return std::nullopt;
  return value;
}

// `call` with its name checked and `arguments_text` (a JSON object) as its arguments.
std::optional<ParsedCall> named_call(ParsedCall call, std::string_view arguments_text) {
  if (!is_function_name(call.name)) return std::nullopt;
  std::optional<json> arguments = parse_json(arguments_text);
  if (!arguments || !arguments->is_object()) return std::nullopt;
  call.arguments = dump(*arguments);
  return call;
}

}  // namespace

std::optional<ParsedCall> json_call(std::string_view text, std::string_view arguments_key, std::string_view also_key) {
  const std::optional<json> value = parse_json(text);
  if (!value) return std::nullopt;
  return call_of(*value, arguments_key, also_key, /*allow_id=*/false);
}

std::optional<std::vector<ParsedCall>> json_calls_separated(std::string_view text, std::string_view arguments_key,
                                                            std::string_view also_key) {
  std::vector<ParsedCall> calls;
  int depth = 0;
  bool in_string = false;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : ';';
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') ++depth;
    else if (c == '}' || c == ']') --depth;
    else if (c == ';' && depth == 0) {
      std::optional<ParsedCall> call = json_call(text.substr(start, i - start), arguments_key, also_key);
      if (!call) return std::nullopt;
      calls.push_back(std::move(*call));
      start = i + 1;
    }
  }
  if (in_string || calls.empty()) return std::nullopt;
  return calls;
}

std::optional<std::vector<ParsedCall>> json_call_array(std::string_view text) {
  const std::optional<json> value = parse_json(text);
  if (!value || !value->is_array() || value->empty()) return std::nullopt;
  std::vector<ParsedCall> calls;
  for (const json& element : *value) {
    std::optional<ParsedCall> call = call_of(element, "arguments", "", /*allow_id=*/true);
    if (!call) return std::nullopt;
    calls.push_back(std::move(*call));
  }
  return calls;
}

std::optional<ParsedCall> mistral_named_call(std::string_view text) {
  constexpr std::string_view kArgs = "[ARGS]", kCallId = "[CALL_ID]";
  const size_t args = text.find(kArgs);
  if (args == std::string_view::npos) return std::nullopt;
  std::string_view head = text.substr(0, args);
  ParsedCall call;
  const size_t id = head.find(kCallId);
  if (id != std::string_view::npos) {
    call.id = std::string(trim(head.substr(id + kCallId.size())));
    if (call.id.empty()) return std::nullopt;
    for (char c : call.id)
      if (!is_identifier_char(c)) return std::nullopt;
    head = head.substr(0, id);
  }
  call.name = std::string(trim(head));
  return named_call(std::move(call), text.substr(args + kArgs.size()));
}

std::optional<ParsedCall> deepseek_call(std::string_view text) {
  constexpr std::string_view kSep = "<\uff5ctool\u2581sep\uff5c>";
  const size_t sep = text.find(kSep);
  if (sep == std::string_view::npos) return std::nullopt;
  const std::string_view before = trim(text.substr(0, sep));
  std::string_view after = trim(text.substr(sep + kSep.size()));
  ParsedCall call;
  if (!after.empty() && after.front() == '{') {
    call.name = std::string(before);  // V3.1: name<sep>{...}
  } else {
    if (before != "function") return std::nullopt;  // R1: function<sep>name\n```json ...```
    const size_t newline = after.find('\n');
    if (newline == std::string_view::npos) return std::nullopt;
    call.name = std::string(trim(after.substr(0, newline)));
    after = trim(after.substr(newline + 1));
    constexpr std::string_view kFence = "```";
    if (after.substr(0, kFence.size()) == kFence) {
      const size_t line = after.find('\n');
      if (line == std::string_view::npos || after.size() < line + 1 + kFence.size() ||
          after.substr(after.size() - kFence.size()) != kFence)
        return std::nullopt;
      const std::string_view language = trim(after.substr(kFence.size(), line - kFence.size()));
      if (!language.empty() && language != "json") return std::nullopt;
      after = trim(after.substr(line + 1, after.size() - kFence.size() - line - 1));
    }
  }
  return named_call(std::move(call), after);
}

std::optional<ParsedCall> python_builtin_call(std::string_view text) {
  text = trim(text);
  size_t i = 0;
  while (i < text.size() && is_identifier_char(text[i])) ++i;
  ParsedCall call{"", std::string(text.substr(0, i)), ""};
  constexpr std::string_view kCall = ".call(";
  if (call.name.empty() || text.substr(i, kCall.size()) != kCall || text.back() != ')') return std::nullopt;
  i += kCall.size();
  json arguments = json::object();
  const size_t end = text.size() - 1;  // the closing parenthesis
  while (true) {
    while (i < end && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i == end) break;
    const size_t key_start = i;
    while (i < end && is_identifier_char(text[i])) ++i;
    const std::string key(text.substr(key_start, i - key_start));
    while (i < end && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (key.empty() || i >= end || text[i] != '=') return std::nullopt;
    ++i;
    while (i < end && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= end) return std::nullopt;
    std::optional<json> value = python_value(text.substr(0, end), i);
    if (!value) return std::nullopt;
    arguments[key] = std::move(*value);
    while (i < end && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i < end) {
      if (text[i] != ',') return std::nullopt;
      ++i;
    }
  }
  call.arguments = dump(arguments);
  return call;
}

bool may_start_json_call(std::string_view text) {
  size_t i = 0;
  if (text.empty()) return true;
  if (text[i++] != '{') return false;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  const std::string_view rest = text.substr(i);
  for (std::string_view key : {std::string_view("\"name\""), std::string_view("\"type\"")}) {
    const size_t n = std::min(rest.size(), key.size());
    if (rest.substr(0, n) == key.substr(0, n)) return true;
  }
  return false;
}

}  // namespace kestrel::chat
