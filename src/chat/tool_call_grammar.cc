// The grammar of a reply that is only tool calls (tool_choice "required" or a named
// function), as llama.cpp builds one from the tools' parameter schemas: each call is a
// JSON object {"name": <one tool's name>, "arguments": <that tool's schema>} compiled by
// json_schema_to_grammar, wrapped in the format's call syntax.
#include <cctype>
#include <nlohmann/json.hpp>

#include "decoding/json_schema.h"
#include "kestrel/chat_output.h"
#include "kestrel/error.h"

namespace kestrel {

namespace {

using json = nlohmann::ordered_json;

[[noreturn]] void refuse(const std::string& message) { throw Error(ErrorCategory::invalid_argument, message); }

// The schema of one call: the tool's name as a constant and its parameters under
// `arguments_key`, both required, nothing else.
json call_schema(const json& tool, size_t i, std::string_view arguments_key) {
  const std::string where = "tools[" + std::to_string(i) + "]";
  if (!tool.is_object() || tool.value("type", "") != "function" || !tool.contains("function") ||
      !tool["function"].is_object())
    refuse("'" + where + "' must be {\"type\": \"function\", \"function\": {...}}");
  const json& function = tool["function"];
  if (!function.contains("name") || !function["name"].is_string() || function["name"].get<std::string>().empty())
    refuse("'" + where + ".function.name' must be a non-empty string");
  json parameters = json{{"type", "object"}};
  if (function.contains("parameters") && !function["parameters"].is_null()) {
    if (!function["parameters"].is_object()) refuse("'" + where + ".function.parameters' must be a JSON Schema object");
    parameters = function["parameters"];
  }
  json properties = json::object();
  properties["name"] = json{{"const", function["name"]}};
  properties[std::string(arguments_key)] = std::move(parameters);
  return json{{"type", "object"},
              {"properties", std::move(properties)},
              {"required", json::array({"name", std::string(arguments_key)})}};
}

// Renames the rule `from` (its definition and every reference) in GBNF text, leaving
// string literals, character classes and comments alone.
std::string rename_rule(std::string_view gbnf, std::string_view from, std::string_view to) {
  std::string out;
  auto is_name = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; };
  for (size_t i = 0; i < gbnf.size();) {
    const char c = gbnf[i];
    if (c == '"' || c == '[') {
      const char close = c == '"' ? '"' : ']';
      size_t j = i + 1;
      for (; j < gbnf.size() && gbnf[j] != close; ++j)
        if (gbnf[j] == '\\') ++j;
      j = std::min(j + 1, gbnf.size());
      out += gbnf.substr(i, j - i);
      i = j;
    } else if (c == '#') {
      const size_t j = std::min(gbnf.find('\n', i), gbnf.size());
      out += gbnf.substr(i, j - i);
      i = j;
    } else if (is_name(c)) {
      size_t j = i;
      while (j < gbnf.size() && is_name(gbnf[j])) ++j;
      const std::string_view name = gbnf.substr(i, j - i);
      out += name == from ? to : name;
      i = j;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

constexpr std::string_view kCallRule = "kestrel-tool-call";

}  // namespace

std::string tool_call_grammar(ToolCallFormat format, std::string_view tools_json, std::string_view function_name,
                              int max_calls, bool after_open_thought) {
  if (format == ToolCallFormat::mistral || format == ToolCallFormat::granite || format == ToolCallFormat::deepseek)
    throw Error(ErrorCategory::unsupported,
                std::string("the ") + to_string(format) +
                    " tool-call format opens its calls with a special token, which constrained decoding "
                    "cannot produce: it has no grammar for required tool calls");
  if (format == ToolCallFormat::none)
    throw Error(ErrorCategory::unsupported, "the model's chat template has no tool-call format to constrain");
  if (max_calls < 0) refuse("max_calls must be >= 0");
  json tools = json::parse(tools_json.begin(), tools_json.end(), nullptr, /*allow_exceptions=*/false);
  if (!tools.is_array() || tools.empty()) refuse("'tools' must be a non-empty array of function tools");
  const std::string_view arguments_key = format == ToolCallFormat::llama3 ? "parameters" : "arguments";
  json alternatives = json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    json schema = call_schema(tools[i], i, arguments_key);
    if (function_name.empty() || tools[i]["function"]["name"] == std::string(function_name))
      alternatives.push_back(std::move(schema));
  }
  if (alternatives.empty())
    refuse("the function '" + std::string(function_name) + "' named by tool_choice is not among the tools");
  const json call = alternatives.size() == 1 ? alternatives[0] : json{{"anyOf", alternatives}};
  std::string grammar;
  try {
    grammar = rename_rule(json_schema_to_grammar(call.dump()), "root", kCallRule);
  } catch (const Error& e) {
    refuse("a tool's parameters cannot be compiled to a grammar: " + e.message());
  }
  const std::string rule(kCallRule);
  // After a prompt that opened <think>: the thought (any text without "</think>"), its
  // close, then the calls.
  const std::string root = after_open_thought ? "root ::= tool-call-thought \"</think>\" [ \\n]* tool-calls\n"
                                                "tool-call-thought ::= ([^<] | \"<\" [^/] | \"</\" [^t] | \"</t\" [^h] | "
                                                "\"</th\" [^i] | \"</thi\" [^n] | \"</thin\" [^k] | \"</think\" [^>])*\n"
                                                "tool-calls ::= "
                                              : "root ::= ";
  if (format == ToolCallFormat::llama3) return root + rule + "\n" + grammar;
  // hermes: <tool_call>\n{...}\n</tool_call>, as Qwen 2.5 / Hermes templates show them,
  // one per line.
  std::string calls = root + "tool-call-block";
  if (max_calls == 0)
    calls += " (\"\\n\" tool-call-block)*";
  else if (max_calls > 1)
    calls += " (\"\\n\" tool-call-block){0," + std::to_string(max_calls - 1) + "}";
  return calls + "\ntool-call-block ::= \"<tool_call>\\n\" " + rule + " \"\\n</tool_call>\"\n" + grammar;
}

}  // namespace kestrel
