// The server's chat pieces below HTTP: chat_tools (tools, tool_choice and
// parallel_tool_calls checked, the reply's parse and the grammar they imply) and the
// response builders (message.tool_calls, reasoning_content, finish_reason "tool_calls",
// streamed delta.tool_calls) in OpenAI's shapes.
#include <gtest/gtest.h>

#include "../../examples/server/api_error.h"
#include "../../examples/server/chat_tools.h"
#include "../../examples/server/openai_response.h"

namespace kestrel_server {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

const char* kWeather = R"({"type": "function", "function": {"name": "get_weather", "parameters":
  {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})";

kestrel::ChatOutputFormat hermes_with_thoughts() {
  kestrel::ChatOutputFormat f;
  f.tool_calls = kestrel::ToolCallFormat::hermes;
  f.reasoning = true;
  return f;
}

std::string refused_param(const std::string& body, const kestrel::ChatOutputFormat& served) {
  try {
    chat_tools(ojson::parse(body), served);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    return e.body()["error"]["param"].get<std::string>();
  }
  ADD_FAILURE() << "accepted: " << body;
  return "";
}

TEST(ChatTools, ChoicesSetParsingTemplateToolsAndGrammar) {
  const std::string tools = std::string("[") + kWeather + "]";
  const ChatTools none_given = chat_tools(ojson::parse("{}"), hermes_with_thoughts());
  EXPECT_EQ(none_given.output.tool_calls, kestrel::ToolCallFormat::none);
  EXPECT_TRUE(none_given.output.reasoning);  // reasoning is parsed with or without tools
  EXPECT_TRUE(none_given.template_tools.is_null());

  const ChatTools automatic = chat_tools(ojson::parse(R"({"tools": )" + tools + "}"), hermes_with_thoughts());
  EXPECT_EQ(automatic.output.tool_calls, kestrel::ToolCallFormat::hermes);
  EXPECT_EQ(automatic.template_tools.size(), 1u);
  EXPECT_TRUE(automatic.grammar.empty());
  EXPECT_EQ(automatic.output.max_tool_calls, 0);

  const ChatTools off = chat_tools(ojson::parse(R"({"tool_choice": "none", "tools": )" + tools + "}"),
                                   hermes_with_thoughts());
  EXPECT_EQ(off.output.tool_calls, kestrel::ToolCallFormat::none);
  EXPECT_TRUE(off.template_tools.is_null());

  const ChatTools one = chat_tools(
      ojson::parse(R"({"tool_choice": "required", "parallel_tool_calls": false, "tools": )" + tools + "}"),
      hermes_with_thoughts());
  EXPECT_EQ(one.output.max_tool_calls, 1);
  EXPECT_NE(one.grammar.find("<tool_call>"), std::string::npos);
  EXPECT_NE(one.grammar.find("get_weather"), std::string::npos);
}

TEST(ChatTools, BadFieldsAreNamed) {
  const auto f = hermes_with_thoughts();
  const std::string tools = std::string("[") + kWeather + "]";
  EXPECT_EQ(refused_param(R"({"tools": {}})", f), "tools");
  EXPECT_EQ(refused_param(R"({"tools": [{"type": "function", "function": {"name": "a b"}}]})", f),
            "tools[0].function.name");
  EXPECT_EQ(refused_param(R"({"tools": [{"type": "function", "function": {"name": "a", "parameters": 3}}]})", f),
            "tools[0].function.parameters");
  EXPECT_EQ(refused_param(R"({"tool_choice": "always", "tools": )" + tools + "}", f), "tool_choice");
  EXPECT_EQ(refused_param(R"({"tool_choice": {"type": "function", "function": {"name": "x"}}, "tools": )" + tools +
                              "}",
                          f),
            "tool_choice");
  EXPECT_EQ(refused_param(R"({"tool_choice": "required"})", f), "tool_choice");
  EXPECT_EQ(refused_param(R"({"parallel_tool_calls": 1, "tools": )" + tools + "}", f), "parallel_tool_calls");
  kestrel::ChatOutputFormat mistral;
  mistral.tool_calls = kestrel::ToolCallFormat::mistral;
  EXPECT_EQ(refused_param(R"({"tool_choice": "required", "tools": )" + tools + "}", mistral), "tool_choice");
}

TEST(ChatResponse, MessageAndFinishReasonCarryCalls) {
  kestrel::ChatOutputFormat f = hermes_with_thoughts();
  ResponseHeader header{"chatcmpl-1", 1, "m", Endpoint::chat_completions, nullptr, f};
  kestrel::GenerationResult result;
  result.text = "<think>sunny?</think>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n"
                "</tool_call>";
  result.finish = kestrel::FinishReason::stop_token;
  const json out = full_response(header, result);
  const json& choice = out["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_TRUE(choice["message"]["content"].is_null());
  EXPECT_EQ(choice["message"]["reasoning_content"], "sunny?");
  const json& call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()), json::parse(R"({"city": "Oslo"})"));
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);

  // Cut short by max_tokens: the unfinished call is content and the reason stays "length".
  result.text = "<tool_call>\n{\"name\": \"get_weather\", \"argu";
  result.finish = kestrel::FinishReason::length;
  const json cut = full_response(header, result)["choices"][0];
  EXPECT_EQ(cut["finish_reason"], "length");
  EXPECT_EQ(cut["message"]["content"], result.text);
  EXPECT_FALSE(cut["message"].contains("tool_calls"));
  EXPECT_FALSE(cut["message"].contains("reasoning_content"));
}

TEST(ChatResponse, DeltaChunksInOpenAIShape) {
  ResponseHeader header{"chatcmpl-1", 1, "m", Endpoint::chat_completions, nullptr, hermes_with_thoughts()};
  kestrel::ChatOutputParser parser(*header.chat_output);
  json chunk = delta_chunk(header, 0, parser.feed("<think>hm</think>Sure."));
  EXPECT_EQ(chunk["object"], "chat.completion.chunk");
  EXPECT_EQ(chunk["choices"][0]["delta"], json::parse(R"({"content": "Sure.", "reasoning_content": "hm"})"));
  chunk = delta_chunk(header, 0, parser.feed("<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>"));
  const json& calls = chunk["choices"][0]["delta"]["tool_calls"];
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[0]["type"], "function");
  EXPECT_EQ(calls[0]["function"], json::parse(R"({"name": "f", "arguments": ""})"));
  EXPECT_EQ(calls[0]["id"], parser.result().tool_calls[0].id);
  EXPECT_EQ(calls[1], json::parse(R"({"index": 0, "function": {"arguments": "{}"}})"));
  EXPECT_EQ(finish_chunk(header, 0, kestrel::FinishReason::stop_token, true)["choices"][0]["finish_reason"],
            "tool_calls");
  EXPECT_EQ(finish_chunk(header, 0, kestrel::FinishReason::stop_token)["choices"][0]["finish_reason"], "stop");
}

}  // namespace
}  // namespace kestrel_server
