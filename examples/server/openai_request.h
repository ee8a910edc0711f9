// server/openai_request.h: the body of POST /v1/completions and /v1/chat/completions,
// parsed and checked into a kestrel::GenerationRequest. Every refusal is an ApiError(400)
// naming the field (OpenAI's "param"), so the client sees what to fix.
#pragma once

#include <kestrel/kestrel.h>
#include <optional>
#include <string>
#include <string_view>

namespace kestrel_server {

// What the server serves, for the checks that depend on it.
struct ServedModel {
  std::string id;  // the name clients pass as "model" (the file's stem)
  const kestrel::Model* model = nullptr;
  int context = 0;         // SessionOptions.max_sequence_tokens as resolved
  int max_sequences = 0;   // the most completions ("n") of one request
  // How chat replies are read (tool calls, reasoning): from the model's chat template, or
  // --tool-call-format / --reasoning-format. Tool-call parsing applies to requests with tools.
  kestrel::ChatOutputFormat output_format;
};

enum class Endpoint { completions, chat_completions };

struct ApiRequest {
  Endpoint endpoint = Endpoint::completions;
  kestrel::GenerationRequest generation;  // prompt_ids set; num_return_sequences = n
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the counts
  // Chat: how the reply is parsed into content, reasoning_content and tool_calls.
  std::optional<kestrel::ChatOutputFormat> chat_output;
};

// Parses the JSON body. Fields (OpenAI's, plus top_k, min_p, repetition_penalty and
// ignore_eos as vLLM and llama.cpp's server take them):
//   model (must be the served one), prompt (string, array of token ids, or an array of one
//   string) or messages ([{role, content}], rendered with the model's chat template),
//   stream, stream_options.include_usage, max_tokens (chat: also max_completion_tokens;
//   default: 16 for completions, the rest of the context for chat), temperature
//   (default 1), top_p, top_k, min_p, seed (default: random), stop (string or up to 4),
//   presence_penalty, frequency_penalty, repetition_penalty, n, ignore_eos, logprobs
//   (completions: an integer in [0, 5]; chat: a boolean, with top_logprobs in [0, 20]).
// Chat also: tools, tool_choice ("none", "auto", "required" or a named function; the last
// two enforced by a grammar), parallel_tool_calls, chat_template_kwargs (chat_tools.h).
ApiRequest parse_request(std::string_view body, Endpoint endpoint, const ServedModel& served);

}  // namespace kestrel_server
