// Fuzz target: a chat reply taken apart into content, reasoning and tool calls
// (kestrel/chat_output.h). The first byte picks the format (tool-call syntax, reasoning,
// a thought the prompt opened, the thought markers, max_tool_calls), the second how the
// reply is cut into streamed pieces, the rest is the reply. parse_chat_output must not
// throw for any text (nothing is swallowed here: any exception is a finding), and the
// streamed deltas must add up to the whole parse, call for call.
#include <cstdlib>
#include <string>

#include "fuzz_support.h"
#include "kestrel/chat_output.h"

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel;
  fuzz::ByteReader in(data, size);
  const auto flags = in.take<uint8_t>();
  const auto cut = in.take<uint8_t>();
  const std::string text = in.rest();

  ChatOutputFormat format;
  static constexpr ToolCallFormat kFormats[] = {ToolCallFormat::none,    ToolCallFormat::hermes,
                                                ToolCallFormat::llama3,  ToolCallFormat::mistral,
                                                ToolCallFormat::granite, ToolCallFormat::deepseek};
  format.tool_calls = kFormats[(flags & 7) % (sizeof(kFormats) / sizeof(kFormats[0]))];
  format.reasoning = (flags & 8) != 0;
  format.thinking_open = (flags & 16) != 0;
  format.thought_markers = (flags & 32) != 0 ? ThoughtMarkers::mistral : ThoughtMarkers::think_tags;
  format.max_tool_calls = flags >> 6;

  const ChatOutput whole = parse_chat_output(text, format);

  // Pieces of 1 to 16 bytes, their lengths cycling from the cut byte.
  ChatOutputParser parser(format);
  ChatOutput streamed;
  auto add = [&](const ChatOutputDelta& d) {
    streamed.content += d.content;
    streamed.reasoning_content += d.reasoning_content;
    for (const ToolCallDelta& t : d.tool_calls) {
      const auto index = static_cast<size_t>(t.index);
      if (index == streamed.tool_calls.size()) {
        require(!t.id.empty() && !t.name.empty());
        streamed.tool_calls.push_back({t.id, t.name, t.arguments});
      } else {
        require(index < streamed.tool_calls.size() && t.id.empty() && t.name.empty());
        streamed.tool_calls[index].arguments += t.arguments;
      }
    }
  };
  size_t step = 0;
  for (size_t at = 0; at < text.size();) {
    const size_t n = 1 + (static_cast<size_t>(cut) + step++) % 16;
    add(parser.feed(std::string_view(text).substr(at, n)));
    at += n;
  }
  add(parser.finish());

  require(streamed.content == whole.content);
  require(streamed.reasoning_content == whole.reasoning_content);
  require(streamed.tool_calls.size() == whole.tool_calls.size());
  for (size_t i = 0; i < whole.tool_calls.size(); ++i) {
    require(streamed.tool_calls[i].name == whole.tool_calls[i].name);
    require(streamed.tool_calls[i].arguments == whole.tool_calls[i].arguments);
    require(streamed.tool_calls[i].id == parser.result().tool_calls[i].id);
  }
  return 0;
}
