#include "chat_tools.h"

#include <cctype>
#include <kestrel/error.h>

#include "api_error.h"

namespace kestrel_server {

namespace {

using json = nlohmann::ordered_json;

// OpenAI's rule for a function's name: a-z, A-Z, 0-9, underscores and dashes, at most 64.
bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  return true;
}

void check_tools(const json& tools) {
  if (!tools.is_array()) refuse("tools", "'tools' must be an array");
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string at = "tools[" + std::to_string(i) + "]";
    const json& tool = tools[i];
    if (!tool.is_object()) refuse(at, "'" + at + "' must be an object");
    if (tool.value("type", "") != "function") refuse(at + ".type", "'" + at + ".type' must be \"function\"");
    const json* function = field(tool, "function");
    if (!function || !function->is_object()) refuse(at + ".function", "'" + at + ".function' must be an object");
    const json* name = field(*function, "name");
    if (!name || !name->is_string() || !valid_function_name(name->get<std::string>()))
      refuse(at + ".function.name",
             "'" + at + ".function.name' must be 1 to 64 letters, digits, underscores or dashes");
    const json* parameters = field(*function, "parameters");
    if (parameters && !parameters->is_object())
      refuse(at + ".function.parameters", "'" + at + ".function.parameters' must be a JSON Schema object");
  }
}

// Whether a value nests deeper than `limit`: the grammar compiler recurses over schemas.
bool nests_deeper(const json& j, int limit) {
  if (!j.is_structured()) return false;
  if (limit == 0) return true;
  for (const json& e : j)
    if (nests_deeper(e, limit - 1)) return true;
  return false;
}

bool has_tool(const json& tools, const std::string& name) {
  for (const json& tool : tools)
    if (tool["function"]["name"] == name) return true;
  return false;
}

}  // namespace

std::string ChatTools::grammar_after_thought() const {
  return kestrel::tool_call_grammar(output.tool_calls, tools_json, function_name, max_calls, true);
}

ChatTools chat_tools(const json& body, const kestrel::ChatOutputFormat& served) {
  ChatTools out;
  out.output = served;
  out.output.tool_calls = kestrel::ToolCallFormat::none;
  json tools = json::array();
  if (const json* given = field(body, "tools")) {
    check_tools(*given);
    if (nests_deeper(*given, 64)) refuse("tools", "'tools' nests deeper than 64 levels");
    tools = *given;
  }
  bool parallel = true;
  if (const json* p = field(body, "parallel_tool_calls")) {
    if (!p->is_boolean()) refuse("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    parallel = p->get<bool>();
  }
  // tool_choice: "none", "auto" (the default), "required", or one named function.
  std::string choice = "auto";
  std::string named;
  if (const json* c = field(body, "tool_choice")) {
    if (c->is_string()) {
      choice = c->get<std::string>();
      if (choice != "none" && choice != "auto" && choice != "required")
        refuse("tool_choice", "'tool_choice' = '" + choice + "' (expected none, auto, required or a function)");
    } else if (c->is_object() && c->value("type", "") == "function" && c->contains("function") &&
               (*c)["function"].is_object() && (*c)["function"].contains("name") &&
               (*c)["function"]["name"].is_string()) {
      choice = "function";
      named = (*c)["function"]["name"].get<std::string>();
      if (!has_tool(tools, named))
        refuse("tool_choice", "'tool_choice' names the function '" + named + "', which is not among 'tools'");
    } else {
      refuse("tool_choice",
             "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": "
             "{\"name\": ...}}");
    }
  }
  if (tools.empty()) {
    if (choice == "required" || choice == "function")
      refuse("tool_choice", "'tool_choice' = " + (named.empty() ? "'required'" : "'" + named + "'") +
                                " needs a non-empty 'tools'");
    return out;
  }
  if (choice == "none") return out;
  out.template_tools = tools;
  out.output.tool_calls = served.tool_calls;
  out.output.max_tool_calls = parallel ? 0 : 1;
  if (choice == "auto") return out;
  out.tools_json = tools.dump();
  out.function_name = named;
  out.max_calls = parallel ? 0 : 1;
  try {
    out.grammar = kestrel::tool_call_grammar(served.tool_calls, out.tools_json, named, out.max_calls);
  } catch (const kestrel::Error& e) {
    const bool format = e.category() == kestrel::ErrorCategory::unsupported;
    throw ApiError(400, (format ? "'tool_choice' cannot be enforced: " : "'tools' cannot be enforced: ") + e.message(),
                   format ? "tool_choice" : "tools", "invalid_value");
  }
  return out;
}

}  // namespace kestrel_server
