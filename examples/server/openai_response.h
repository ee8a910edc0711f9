// server/openai_response.h: the JSON objects of OpenAI's completion responses, whole
// (stream false) and as server-sent-event chunks (stream true).
#pragma once

#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "openai_request.h"

namespace kestrel_server {

// What every response and chunk of one request repeats.
struct ResponseHeader {
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
  Endpoint endpoint = Endpoint::completions;
  // Set when the request asked for logprobs: spells the tokens (logprobs_json.h).
  const kestrel::Tokenizer* logprobs_tokenizer = nullptr;
  // Chat: how replies are parsed into content, reasoning_content and tool_calls.
  std::optional<kestrel::ChatOutputFormat> chat_output;
};

// OpenAI's finish_reason: "stop" (a stop token or string), "length"; null otherwise.
// `tool_calls`: the reply ended in tool calls, which turns "stop" into "tool_calls".
nlohmann::json finish_reason(kestrel::FinishReason reason, bool tool_calls = false);

// A chat completion's message: role, content (null when the reply is only tool calls),
// reasoning_content when there is any, tool_calls when there are any (OpenAI's shape:
// {id, type: "function", function: {name, arguments}}).
nlohmann::json assistant_message(const kestrel::ChatOutput& output);
// A streamed chat chunk with what one piece of text added (delta.content,
// delta.reasoning_content, delta.tool_calls with index, then id, type and function.name
// once, then function.arguments); `logprobs` as for text_chunk.
nlohmann::json delta_chunk(const ResponseHeader& header, int index, const kestrel::ChatOutputDelta& delta,
                           nlohmann::json logprobs = nullptr);

// The whole response of a finished request (stream false).
nlohmann::json full_response(const ResponseHeader& header, const kestrel::GenerationResult& result);
// A chunk carrying new text of completion `index` (chat: a delta with the content).
// `logprobs`: the entries of the tokens this text completes (logprobs_json.h), or null.
nlohmann::json text_chunk(const ResponseHeader& header, int index, const std::string& text,
                          nlohmann::json logprobs = nullptr);
// Chat only: the first chunk of completion `index`, announcing the assistant's role.
nlohmann::json role_chunk(const ResponseHeader& header, int index);
// The last chunk of completion `index`: no text, its finish_reason.
nlohmann::json finish_chunk(const ResponseHeader& header, int index, kestrel::FinishReason reason,
                            bool tool_calls = false);
// stream_options.include_usage: a chunk with no choices and the token counts.
nlohmann::json usage_chunk(const ResponseHeader& header, const kestrel::GenerationResult& result);

// The completions of a result: sequences, or the result itself when there is one.
int completions(const kestrel::GenerationResult& result);
kestrel::FinishReason finish_of(const kestrel::GenerationResult& result, int index);

// A JSON value as one line of UTF-8 (invalid bytes in generated text become U+FFFD).
std::string to_text(const nlohmann::json& value);

}  // namespace kestrel_server
