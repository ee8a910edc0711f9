// Chat replies split into content, reasoning and tool calls (kestrel/chat_output.h):
// every case of tests/fixtures/chat_output_cases.json (llama.cpp's asserted messages plus
// our own invalid and partial inputs) parsed whole, then streamed cut at every byte and fed
// byte by byte, the streamed deltas adding up to the whole parse; formats detected from
// the real templates of tests/fixtures/chat-templates/; the grammars of tool_choice
// "required" admitting valid calls and refusing others.
#include <gtest/gtest.h>

#include <kestrel/chat.h>
#include <kestrel/chat_output.h>
#include <kestrel/error.h>
#include <nlohmann/json.hpp>

#include "decoding/grammar.h"
#include "test_support.h"

namespace kestrel {
namespace {

using json = nlohmann::json;

json cases() { return json::parse(testing::read_file(testing::fixture_dir() / "chat_output_cases.json"))["cases"]; }

ChatOutputFormat format_of(const json& f) {
  ChatOutputFormat format;
  format.tool_calls = parse_tool_call_format(f["tool_calls"].get<std::string>());
  format.reasoning = f["reasoning"].get<bool>();
  format.thinking_open = f["thinking_open"].get<bool>();
  format.max_tool_calls = f["max_tool_calls"].get<int>();
  if (f.value("thought_markers", "think_tags") == "mistral") format.thought_markers = ThoughtMarkers::mistral;
  return format;
}

void expect_output(const json& expected, const ChatOutput& out, const std::string& where) {
  EXPECT_EQ(out.content, expected["content"].get<std::string>()) << where;
  EXPECT_EQ(out.reasoning_content, expected["reasoning_content"].get<std::string>()) << where;
  const json& calls = expected["tool_calls"];
  ASSERT_EQ(out.tool_calls.size(), calls.size()) << where;
  for (size_t i = 0; i < calls.size(); ++i) {
    const ToolCall& call = out.tool_calls[i];
    EXPECT_EQ(call.name, calls[i]["name"].get<std::string>()) << where;
    EXPECT_EQ(json::parse(call.arguments), json::parse(calls[i]["arguments"].get<std::string>())) << where;
    if (calls[i].contains("id")) {
      EXPECT_EQ(call.id, calls[i]["id"].get<std::string>()) << where;
    } else {
      EXPECT_EQ(call.id.rfind("call_", 0), 0u) << where;
      EXPECT_EQ(call.id.size(), 29u) << where;
    }
  }
}

// The deltas of one stream, put back together; checks the OpenAI shape on the way: a
// call's first delta carries its index, id and name, later ones only arguments.
struct Assembled {
  ChatOutput out;
  void add(const ChatOutputDelta& d, const std::string& where) {
    out.content += d.content;
    out.reasoning_content += d.reasoning_content;
    for (const ToolCallDelta& t : d.tool_calls) {
      const auto index = static_cast<size_t>(t.index);
      if (index == out.tool_calls.size()) {
        EXPECT_FALSE(t.id.empty()) << where;
        EXPECT_FALSE(t.name.empty()) << where;
        out.tool_calls.push_back({t.id, t.name, t.arguments});
      } else {
        ASSERT_LT(index, out.tool_calls.size()) << where;
        EXPECT_TRUE(t.id.empty() && t.name.empty()) << where;
        out.tool_calls[index].arguments += t.arguments;
      }
    }
  }
};

void expect_same(const ChatOutput& streamed, const ChatOutput& whole, const ChatOutput& parser_result,
                 const std::string& where) {
  EXPECT_EQ(streamed.content, whole.content) << where;
  EXPECT_EQ(streamed.reasoning_content, whole.reasoning_content) << where;
  ASSERT_EQ(streamed.tool_calls.size(), whole.tool_calls.size()) << where;
  ASSERT_EQ(parser_result.tool_calls.size(), whole.tool_calls.size()) << where;
  for (size_t i = 0; i < whole.tool_calls.size(); ++i) {
    EXPECT_EQ(streamed.tool_calls[i].name, whole.tool_calls[i].name) << where;
    EXPECT_EQ(streamed.tool_calls[i].arguments, whole.tool_calls[i].arguments) << where;
    EXPECT_EQ(streamed.tool_calls[i].id, parser_result.tool_calls[i].id) << where;
  }
  EXPECT_EQ(parser_result.content, whole.content) << where;
}

TEST(ChatOutput, FixtureCasesParseWhole) {
  const json all = cases();
  ASSERT_GE(all.size(), 40u);
  for (const json& c : all) {
    const ChatOutput out = parse_chat_output(c["text"].get<std::string>(), format_of(c["format"]));
    expect_output(c["expected"], out, c["name"].get<std::string>());
  }
}

TEST(ChatOutput, StreamedAtEverySplitEqualsWhole) {
  for (const json& c : cases()) {
    const std::string text = c["text"].get<std::string>();
    const ChatOutputFormat format = format_of(c["format"]);
    const ChatOutput whole = parse_chat_output(text, format);
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      const std::string where = c["name"].get<std::string>() + " cut at " + std::to_string(cut);
      ChatOutputParser parser(format);
      Assembled a;
      a.add(parser.feed(text.substr(0, cut)), where);
      a.add(parser.feed(text.substr(cut)), where);
      a.add(parser.finish(), where);
      expect_same(a.out, whole, parser.result(), where);
    }
    // Byte by byte: nothing that is still a marker's start reaches the content early.
    ChatOutputParser parser(format);
    Assembled a;
    const std::string where = c["name"].get<std::string>() + " byte by byte";
    for (size_t i = 0; i < text.size(); ++i) {
      a.add(parser.feed(text.substr(i, 1)), where);
      EXPECT_EQ(whole.content.compare(0, a.out.content.size(), a.out.content), 0) << where << " at " << i;
    }
    a.add(parser.finish(), where);
    expect_same(a.out, whole, parser.result(), where);
  }
}

TEST(ChatOutput, MarkersAreHeldBackWhileStreaming) {
  ChatOutputFormat hermes;
  hermes.tool_calls = ToolCallFormat::hermes;
  ChatOutputParser parser(hermes);
  EXPECT_EQ(parser.feed("Checking <tool_").content, "Checking");
  ChatOutputDelta d = parser.feed("call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}");
  EXPECT_TRUE(d.empty());  // an unfinished call is held until it closes
  d = parser.feed("</tool_call>");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[1].arguments, "{\"city\":\"Paris\"}");
  EXPECT_TRUE(parser.finish().empty());
  EXPECT_THROW(parser.feed("more"), Error);

  ChatOutputFormat thinking;
  thinking.reasoning = true;
  ChatOutputParser thought(thinking);
  EXPECT_TRUE(thought.feed("<thi").empty());
  EXPECT_EQ(thought.feed("nk>Let me see</th").reasoning_content, "Let me see");
  d = thought.feed("ink>\n\nIt is 4.");
  EXPECT_EQ(d.content, "It is 4.");
  EXPECT_TRUE(d.reasoning_content.empty());
}

TEST(ChatOutput, NeverThrowsOnArbitraryText) {
  // Deep nesting, stray markers and control bytes: parsed as content, no crash.
  const std::string deep = "<tool_call>" + std::string(100000, '[') + "</tool_call>";
  ChatOutputFormat hermes;
  hermes.tool_calls = ToolCallFormat::hermes;
  EXPECT_EQ(parse_chat_output(deep, hermes).content, deep);
  ChatOutputFormat llama;
  llama.tool_calls = ToolCallFormat::llama3;
  EXPECT_EQ(parse_chat_output("<|python_tag|>" + std::string(100000, '{'), llama).tool_calls.size(), 1u);
  ChatOutputFormat deepseek;
  deepseek.tool_calls = ToolCallFormat::deepseek;
  const std::string deep_call = "<\uff5ctool\u2581calls\u2581begin\uff5c><\uff5ctool\u2581call\u2581begin\uff5c>f"
                                "<\uff5ctool\u2581sep\uff5c>" + std::string(100000, '{');
  EXPECT_EQ(parse_chat_output(deep_call, deepseek).content, deep_call);
  ChatOutputFormat mistral;
  mistral.tool_calls = ToolCallFormat::mistral;
  const std::string deep_args = "[TOOL_CALLS]f[ARGS]" + std::string(100000, '[');
  EXPECT_EQ(parse_chat_output(deep_args, mistral).content, deep_args);
  const std::string junk = "\x01<think></think><|tool_call|>[TOOL_CALLS][ARGS][CALL_ID]<\uff5ctool\u2581calls\uff5c>"
                           "<\uff5ctool\u2581sep\uff5c>\xff";
  for (ToolCallFormat f : {ToolCallFormat::none, ToolCallFormat::hermes, ToolCallFormat::llama3,
                           ToolCallFormat::mistral, ToolCallFormat::granite, ToolCallFormat::deepseek}) {
    ChatOutputFormat format;
    format.tool_calls = f;
    format.reasoning = true;
    EXPECT_NO_THROW(parse_chat_output(junk, format));
  }
}

TEST(ChatOutput, FormatsDetectedFromRealTemplates) {
  struct Expectation {
    const char* file;
    ToolCallFormat tool_calls;
    bool reasoning;
  };
  const Expectation expectations[] = {
      {"Qwen-Qwen2.5-7B-Instruct.jinja", ToolCallFormat::hermes, false},
      {"Qwen-Qwen3-0.6B.jinja", ToolCallFormat::hermes, true},
      {"Qwen-QwQ-32B.jinja", ToolCallFormat::hermes, true},
      {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", ToolCallFormat::hermes, false},
      {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", ToolCallFormat::hermes, false},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", ToolCallFormat::llama3, false},
      {"meta-llama-Llama-3.2-3B-Instruct.jinja", ToolCallFormat::llama3, false},
      {"meta-llama-Llama-3.3-70B-Instruct.jinja", ToolCallFormat::llama3, false},
      {"mistralai-Mistral-Nemo-Instruct-2407.jinja", ToolCallFormat::mistral, false},
      {"ibm-granite-granite-3.3-2B-Instruct.jinja", ToolCallFormat::granite, true},
      {"Mistral-Small-3.2-24B-Instruct-2506.jinja", ToolCallFormat::mistral, false},
      {"unsloth-mistral-Devstral-Small-2507.jinja", ToolCallFormat::mistral, false},
      {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", ToolCallFormat::deepseek, true},
      {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", ToolCallFormat::deepseek, true},
      {"llama-cpp-deepseek-r1.jinja", ToolCallFormat::deepseek, true},
      {"google-gemma-2-2b-it.jinja", ToolCallFormat::none, false},
  };
  for (const Expectation& e : expectations) {
    const std::string text = testing::read_file(testing::fixture_dir() / "chat-templates" / e.file);
    const ChatOutputFormat f = detect_chat_output_format(text);
    EXPECT_EQ(f.tool_calls, e.tool_calls) << e.file;
    EXPECT_EQ(f.reasoning, e.reasoning) << e.file;
  }
  // QwQ and the R1 distills open <think> in the generation prompt; Qwen3 does not.
  const std::string messages = R"([{"role": "user", "content": "2 + 2?"}])";
  auto opens = [&](const char* file) {
    const std::string text = testing::read_file(testing::fixture_dir() / "chat-templates" / file);
    return prompt_opens_thinking(apply_chat_template_json(text, messages, {}, "<s>", "</s>"));
  };
  EXPECT_TRUE(opens("Qwen-QwQ-32B.jinja"));
  EXPECT_TRUE(opens("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"));
  EXPECT_FALSE(opens("Qwen-Qwen3-0.6B.jinja"));
  // Magistral 2509 / Ministral 3 mark thoughts [THINK]...[/THINK] (their templates render
  // a reasoning turn so; this line is the part that matters here).
  const ChatOutputFormat magistral =
      detect_chat_output_format("{{- '[THINK]' + message.reasoning_content + '[/THINK]' }}{{- '[TOOL_CALLS]' }}");
  EXPECT_TRUE(magistral.reasoning);
  EXPECT_EQ(magistral.thought_markers, ThoughtMarkers::mistral);
  EXPECT_EQ(magistral.tool_calls, ToolCallFormat::mistral);
  EXPECT_TRUE(prompt_opens_thinking("[INST]2 + 2?[/INST][THINK]\n", ThoughtMarkers::mistral));
  EXPECT_FALSE(prompt_opens_thinking("[INST]2 + 2?[/INST][THINK]\n"));
  EXPECT_FALSE(opens("Qwen-Qwen2.5-7B-Instruct.jinja"));
}

TEST(ChatOutput, FormatNamesRoundTrip) {
  for (ToolCallFormat f : {ToolCallFormat::none, ToolCallFormat::hermes, ToolCallFormat::llama3,
                           ToolCallFormat::mistral, ToolCallFormat::granite, ToolCallFormat::deepseek})
    EXPECT_EQ(parse_tool_call_format(to_string(f)), f);
  try {
    parse_tool_call_format("pythonic", "--tool-call-format");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("--tool-call-format 'pythonic'"), std::string::npos) << e.message();
  }
}

const char* kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}},
  {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
    "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]}}}
])";

bool matches(const std::string& gbnf, std::string_view text) {
  return grammar::Matcher::matches(std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(gbnf)), text);
}

TEST(ToolCallGrammar, HermesAdmitsValidCallsOnly) {
  const std::string any = tool_call_grammar(ToolCallFormat::hermes, kTools);
  const std::string weather = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"days\": 3}}\n</tool_call>";
  const std::string time = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}\n</tool_call>";
  EXPECT_TRUE(matches(any, weather));
  EXPECT_TRUE(matches(any, time));
  EXPECT_TRUE(matches(any, weather + "\n" + time));
  EXPECT_FALSE(matches(any, "Hello"));
  EXPECT_FALSE(matches(any, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"PST\"}}\n</tool_call>"));
  EXPECT_FALSE(matches(any, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"days\": 3}}\n</tool_call>"));
  EXPECT_FALSE(matches(any, "<tool_call>\n{\"name\": \"other\", \"arguments\": {}}\n</tool_call>"));
  // What the grammar admits, the parser reads back as calls.
  ChatOutputFormat hermes;
  hermes.tool_calls = ToolCallFormat::hermes;
  EXPECT_EQ(parse_chat_output(weather + "\n" + time, hermes).tool_calls.size(), 2u);

  const std::string one = tool_call_grammar(ToolCallFormat::hermes, kTools, "get_time", 1);
  EXPECT_TRUE(matches(one, time));
  EXPECT_FALSE(matches(one, weather));
  EXPECT_FALSE(matches(one, time + "\n" + time));
  const std::string two = tool_call_grammar(ToolCallFormat::hermes, kTools, "", 2);
  EXPECT_TRUE(matches(two, time + "\n" + weather));
  EXPECT_FALSE(matches(two, time + "\n" + weather + "\n" + time));
}

TEST(ToolCallGrammar, AfterAnOpenThoughtTheThoughtEndsFirst) {
  const std::string g = tool_call_grammar(ToolCallFormat::hermes, kTools, "get_time", 1, true);
  const std::string call = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}\n</tool_call>";
  EXPECT_TRUE(matches(g, "Time, <then> UTC.\n</think>\n\n" + call));
  EXPECT_TRUE(matches(g, "</think>" + call));
  EXPECT_FALSE(matches(g, call));
  EXPECT_FALSE(matches(g, "Time.</think>Sure."));
  ChatOutputFormat qwq;
  qwq.tool_calls = ToolCallFormat::hermes;
  qwq.reasoning = qwq.thinking_open = true;
  const ChatOutput out = parse_chat_output("Time, <then> UTC.\n</think>\n\n" + call, qwq);
  EXPECT_EQ(out.reasoning_content, "Time, <then> UTC.");
  ASSERT_EQ(out.tool_calls.size(), 1u);
  EXPECT_EQ(out.tool_calls[0].name, "get_time");
}

TEST(ToolCallGrammar, Llama3UsesParameters) {
  const std::string g = tool_call_grammar(ToolCallFormat::llama3, kTools, "get_weather");
  EXPECT_TRUE(matches(g, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}"));
  EXPECT_FALSE(matches(g, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}"));
}

TEST(ToolCallGrammar, RefusalsNameTheProblem) {
  auto message = [](ToolCallFormat f, std::string_view tools, std::string_view name, ErrorCategory category) {
    try {
      tool_call_grammar(f, tools, name);
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), category) << e.message();
      return e.message();
    }
    ADD_FAILURE() << "no error";
    return std::string();
  };
  EXPECT_NE(message(ToolCallFormat::mistral, kTools, "", ErrorCategory::unsupported).find("mistral"),
            std::string::npos);
  EXPECT_NE(message(ToolCallFormat::granite, kTools, "", ErrorCategory::unsupported).find("granite"),
            std::string::npos);
  EXPECT_NE(message(ToolCallFormat::deepseek, kTools, "", ErrorCategory::unsupported).find("deepseek"),
            std::string::npos);
  EXPECT_NE(message(ToolCallFormat::hermes, kTools, "nope", ErrorCategory::invalid_argument).find("'nope'"),
            std::string::npos);
  EXPECT_NE(message(ToolCallFormat::hermes, R"([{"type": "function"}])", "", ErrorCategory::invalid_argument)
                .find("tools[0]"),
            std::string::npos);
  const char* pattern = R"([{"type": "function", "function": {"name": "f", "parameters":
      {"type": "object", "properties": {"s": {"type": "string", "pattern": "^a"}}}}}])";
  EXPECT_NE(message(ToolCallFormat::hermes, pattern, "", ErrorCategory::invalid_argument).find("pattern"),
            std::string::npos);
}

}  // namespace
}  // namespace kestrel
