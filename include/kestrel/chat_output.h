// kestrel/chat_output.h: a chat model's reply split into content, reasoning and tool calls.
//
// A model that calls tools or thinks aloud writes both into its text, in a syntax its chat
// template teaches it. These functions take that text apart again, as vLLM's tool and
// reasoning parsers and llama.cpp's common/chat.cpp do:
//   hermes    Hermes 2 Pro / 3, Qwen 2.5, Qwen3, QwQ: <tool_call>{"name": ..., "arguments":
//             {...}}</tool_call>, any number of them, text between them is content.
//   llama3    Llama 3.1 / 3.2 / 3.3: the whole reply JSON objects {"name": ...,
//             "parameters": {...}} separated by ';' (optionally "type": "function";
//             "arguments" accepted);
//             or <|python_tag|> followed by such an object, by a built-in call
//             `name.call(key="value", ...)`, or by code (a call of "python" with {"code"}).
//   mistral   Mistral Nemo / Small 3.1 / v0.3: [TOOL_CALLS][{"name": ..., "arguments": {...},
//             "id": ...}, ...]; or, as Mistral Small 3.2, Devstral, Magistral and
//             Ministral 3 write them, [TOOL_CALLS]name[ARGS]{...} once per call, with
//             [CALL_ID]id before [ARGS] in some templates. The model's id is kept.
//   granite   Granite 3.x: <|tool_call|>[{"name": ..., "arguments": {...}}, ...].
//   deepseek  DeepSeek R1 (and its template for the distills) and V3.1:
//             <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>name
//             ```json {...} ```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜> (R1; the fence
//             optional, the short opener <｜tool▁calls｜> accepted) or
//             <｜tool▁call▁begin｜>name<｜tool▁sep｜>{...}<｜tool▁call▁end｜> (V3.1).
// Reasoning: <think>...</think> at the start of the reply (Qwen3, QwQ, DeepSeek-R1 and its
// distills), or [THINK]...[/THINK] (Magistral 2509, Ministral 3). When the rendered
// prompt already opens the thought (QwQ, the R1 distills), the reply starts inside it. An
// unclosed thought is all reasoning.
// Text that is not a valid call (bad JSON, a missing name, arguments that are not an
// object, a call past `max_tool_calls`) stays in the content, marker and all: nothing is
// dropped. With tool calls or a thought parsed, the content is trimmed of surrounding
// whitespace; with neither format on it is the text untouched.
// Not covered: Functionary, Command R, gpt-oss channels, Granite 3.3's <response> tags,
// calls inside other text (vLLM's llama3_json finds them), and llama.cpp's lenient extras
// (<function=...>, ```json fences, a bare JSON call in Hermes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel {

enum class ToolCallFormat : uint8_t { none, hermes, llama3, mistral, granite, deepseek };
const char* to_string(ToolCallFormat format) noexcept;
// "none", "hermes", "llama3", "mistral", "granite", "deepseek"; Error(invalid_argument)
// naming `what` and the accepted names otherwise.
ToolCallFormat parse_tool_call_format(std::string_view name, std::string_view what = "tool call format");

// How a thought is marked: <think>...</think> (Qwen3, QwQ, DeepSeek R1 and V3.1, Granite
// 3.3) or [THINK]...[/THINK] (Magistral 2509, Ministral 3 reasoning).
enum class ThoughtMarkers : uint8_t { think_tags, mistral };

// How one reply is parsed.
struct ChatOutputFormat {
  ToolCallFormat tool_calls = ToolCallFormat::none;  // none: no tool-call parsing
  bool reasoning = false;       // a leading thought is taken out as reasoning
  ThoughtMarkers thought_markers = ThoughtMarkers::think_tags;
  bool thinking_open = false;   // the reply starts inside <think> (the prompt opened it)
  int max_tool_calls = 0;       // 0: any number; 1: OpenAI's parallel_tool_calls false
};

// The format a chat template teaches, found by the markers it contains (as llama.cpp's
// common/chat.cpp picks a format): "<tool_call>" -> hermes, "[TOOL_CALLS]" -> mistral,
// "<|tool_call|>" -> granite, "<｜tool▁calls▁begin｜>" or "<｜tool▁call▁begin｜>" ->
// deepseek, "<|python_tag|>" or "<|start_header_id|>ipython" -> llama3;
// "[THINK]" or "[/THINK]" -> reasoning with ThoughtMarkers::mistral, else "<think>" or
// "</think>" -> reasoning. thinking_open is left false: see prompt_opens_thinking.
ChatOutputFormat detect_chat_output_format(std::string_view chat_template);
// Whether a rendered prompt ends inside an open thought (its opener, then optional
// whitespace).
bool prompt_opens_thinking(std::string_view rendered_prompt, ThoughtMarkers markers = ThoughtMarkers::think_tags);

struct ToolCall {
  std::string id;         // the model's own (mistral) or "call_" + 24 random characters
  std::string name;
  std::string arguments;  // a JSON object, as compact JSON text
};

struct ChatOutput {
  std::string content;
  std::string reasoning_content;
  std::vector<ToolCall> tool_calls;
};

// The reply `text` taken apart. Never throws for any text.
ChatOutput parse_chat_output(std::string_view text, const ChatOutputFormat& format);

// What one piece of streamed text adds, in OpenAI's streaming shape: a call first appears
// with its index, id and name (arguments empty), then its arguments follow.
struct ToolCallDelta {
  int index = 0;
  std::string id;         // set on the call's first delta only
  std::string name;       // likewise
  std::string arguments;  // a fragment of the arguments' JSON text
};
struct ChatOutputDelta {
  std::string content;
  std::string reasoning_content;
  std::vector<ToolCallDelta> tool_calls;
  bool empty() const { return content.empty() && reasoning_content.empty() && tool_calls.empty(); }
};

// The incremental parser: feed it the reply piece by piece; it holds back only what may
// still turn out to be a marker, an unfinished call, or whitespace that the end trims
// (so "<tool_" never reaches the content). A call is released once it is complete (its
// closing marker, or the end of the reply), so its arguments arrive in one fragment. The
// deltas of feed() and finish() concatenated equal parse_chat_output() of the whole text
// (ids aside, which are random). Each feed re-reads the text since the start of the
// reply: cost O(length) per piece.
class ChatOutputParser {
 public:
  explicit ChatOutputParser(const ChatOutputFormat& format);
  ~ChatOutputParser();
  ChatOutputParser(ChatOutputParser&&) noexcept;
  ChatOutputParser& operator=(ChatOutputParser&&) noexcept;

  ChatOutputDelta feed(std::string_view piece);
  // The end of the reply: whatever was held back, parsed as final.
  ChatOutputDelta finish();
  // Everything released so far (after finish(): the whole parse, with the ids streamed).
  const ChatOutput& result() const;

 private:
  friend ChatOutput parse_chat_output(std::string_view text, const ChatOutputFormat& format);
  struct State;
  std::unique_ptr<State> state_;
};

// Tool choice "required" or a named function, enforced by constrained decoding: the GBNF
// grammar (ConstraintOptions::grammar) of a reply that is only calls, in the format's
// syntax, each naming one of `tools_json` (OpenAI's tools array: [{"type": "function",
// "function": {"name", "parameters"}}]) or only `function_name` when it is not empty, with
// arguments valid against that tool's parameters schema (json_schema.h semantics), at most
// `max_calls` of them (0: any number, at least one). hermes and llama3 have such a
// grammar; mistral, granite and deepseek open their calls with a special token a grammar
// cannot produce, and none has no call syntax: Error(unsupported) naming the format. A schema
// keyword the grammar compiler does not support is Error(invalid_argument) naming the tool.
// `after_open_thought`: the prompt opened <think> (ChatOutputFormat::thinking_open), so the
// reply may finish its thought, close it with </think>, and then makes the calls.
std::string tool_call_grammar(ToolCallFormat format, std::string_view tools_json, std::string_view function_name = "",
                              int max_calls = 0, bool after_open_thought = false);

}  // namespace kestrel
