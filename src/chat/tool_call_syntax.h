// chat/tool_call_syntax.h: one call's text (what sits between a format's markers) read
// into a name and JSON arguments. Each returns nothing when the text is not exactly one
// well-formed call, so that the caller leaves it in the content.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel::chat {

struct ParsedCall {
  std::string id;  // the model's own id, when the syntax carries one
  std::string name;
  std::string arguments;  // compact JSON object text
};

// {"name": "f", "<arguments_key>": {...}} (with optional "type": "function"; `also_key`,
// when not empty, is accepted in place of arguments_key). Whitespace around is allowed.
std::optional<ParsedCall> json_call(std::string_view text, std::string_view arguments_key,
                                    std::string_view also_key = "");

// Several such objects separated by ';' (Llama 3.x writes parallel calls so); all of the
// parts must be calls.
std::optional<std::vector<ParsedCall>> json_calls_separated(std::string_view text, std::string_view arguments_key,
                                                            std::string_view also_key);

// A JSON array of such objects (mistral: "arguments" and an optional string "id"); an
// empty array is not a call.
std::optional<std::vector<ParsedCall>> json_call_array(std::string_view text);

// One call of Mistral's newer syntax, what follows [TOOL_CALLS] (Mistral Small 3.2,
// Devstral, Magistral, Ministral 3): `name[ARGS]{...}` or `name[CALL_ID]id[ARGS]{...}`,
// the arguments a JSON object; the id is kept.
std::optional<ParsedCall> mistral_named_call(std::string_view text);

// One DeepSeek call, what sits between <｜tool▁call▁begin｜> and <｜tool▁call▁end｜>:
// R1's `function<｜tool▁sep｜>name\n```json\n{...}\n```` (the fence optional) or V3.1's
// `name<｜tool▁sep｜>{...}`.
std::optional<ParsedCall> deepseek_call(std::string_view text);

// Llama 3.1's built-in tool call: `name.call(key="value", n=1, ...)`, the values JSON
// literals (Python's True / False / None accepted).
std::optional<ParsedCall> python_builtin_call(std::string_view text);

// Whether `text` could still grow into the start of {"name" or {"type" (the beginning of a
// Llama 3.x JSON call), as far as it goes.
bool may_start_json_call(std::string_view text);

}  // namespace kestrel::chat
