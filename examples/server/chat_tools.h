// server/chat_tools.h: a chat request's tools, tool_choice and parallel_tool_calls, checked,
// and what they mean for the reply: whether the template is offered the tools, how the
// reply is parsed (kestrel/chat_output.h) and, for tool_choice "required" or a named
// function, the grammar that makes the reply a call.
#pragma once

#include <kestrel/chat_output.h>
#include <nlohmann/json.hpp>
#include <string>

namespace kestrel_server {

struct ChatTools {
  // The tools the chat template sees; null when there are none or tool_choice is "none"
  // (as vLLM does: a model that is not to call tools is not told about them).
  nlohmann::ordered_json template_tools;
  // How the reply is parsed: the served format, with tool-call parsing off when the
  // template was offered no tools, and max_tool_calls 1 with parallel_tool_calls false.
  kestrel::ChatOutputFormat output;
  // tool_choice "required" or {"type": "function", "function": {"name": ...}}: GBNF for
  // ConstraintOptions::grammar. Empty otherwise.
  std::string grammar;
  // The same, for a prompt that opened <think>: the thought may finish before the calls.
  std::string grammar_after_thought() const;

  // What the grammar was built from.
  std::string tools_json;
  std::string function_name;
  int max_calls = 0;
};

// Checks the fields against OpenAI's shapes; an ApiError(400) names the field at fault
// ("tools[2].function.name", "tool_choice", ...). `served`: the format the server reads
// replies in (from the model's template or --tool-call-format / --reasoning-format).
ChatTools chat_tools(const nlohmann::ordered_json& body, const kestrel::ChatOutputFormat& served);

}  // namespace kestrel_server
