#include "openai_response.h"

#include "logprobs_json.h"

namespace kestrel_server {

using nlohmann::json;

namespace {

json envelope(const ResponseHeader& h, bool chunk) {
  const bool chat = h.endpoint == Endpoint::chat_completions;
  const char* object = chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}

json usage(const kestrel::GenerationResult& result) {
  size_t generated = 0;
  if (result.sequences.empty())
    generated = result.tokens.size();
  else
    for (const auto& s : result.sequences) generated += s.tokens.size();
  const size_t prompt = result.prompt_ids.size();
  return {{"prompt_tokens", prompt}, {"completion_tokens", generated}, {"total_tokens", prompt + generated}};
}

const std::string& text_of(const kestrel::GenerationResult& result, int index) {
  return result.sequences.empty() ? result.text : result.sequences[static_cast<size_t>(index)].text;
}

}  // namespace

json finish_reason(kestrel::FinishReason reason, bool tool_calls) {
  switch (reason) {
    case kestrel::FinishReason::stop_token:
    case kestrel::FinishReason::stop_string: return tool_calls ? "tool_calls" : "stop";
    case kestrel::FinishReason::length: return "length";
    case kestrel::FinishReason::cancelled:
    case kestrel::FinishReason::error: break;
  }
  return nullptr;
}

int completions(const kestrel::GenerationResult& result) {
  return result.sequences.empty() ? 1 : static_cast<int>(result.sequences.size());
}

kestrel::FinishReason finish_of(const kestrel::GenerationResult& result, int index) {
  return result.sequences.empty() ? result.finish : result.sequences[static_cast<size_t>(index)].finish;
}

json assistant_message(const kestrel::ChatOutput& output) {
  json message = {{"role", "assistant"}};
  const bool calls = !output.tool_calls.empty();
  message["content"] = calls && output.content.empty() ? json(nullptr) : json(output.content);
  if (!output.reasoning_content.empty()) message["reasoning_content"] = output.reasoning_content;
  if (calls) {
    json list = json::array();
    for (const kestrel::ToolCall& call : output.tool_calls)
      list.push_back({{"id", call.id},
                      {"type", "function"},
                      {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
    message["tool_calls"] = std::move(list);
  }
  return message;
}

json full_response(const ResponseHeader& h, const kestrel::GenerationResult& result) {
  json out = envelope(h, false);
  json choices = json::array();
  for (int i = 0; i < completions(result); ++i) {
    std::optional<kestrel::ChatOutput> parsed;
    if (h.endpoint == Endpoint::chat_completions && h.chat_output)
      parsed = kestrel::parse_chat_output(text_of(result, i), *h.chat_output);
    const bool calls = parsed && !parsed->tool_calls.empty();
    json choice = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", finish_reason(finish_of(result, i), calls)}};
    if (h.logprobs_tokenizer) {
      const bool own = result.sequences.empty();
      const auto& tokens = own ? result.tokens : result.sequences[static_cast<size_t>(i)].tokens;
      const auto& logprobs = own ? result.logprobs : result.sequences[static_cast<size_t>(i)].logprobs;
      choice["logprobs"] = logprobs_json(*h.logprobs_tokenizer, h.endpoint, tokens, logprobs, text_of(result, i));
    }
    if (parsed)
      choice["message"] = assistant_message(*parsed);
    else if (h.endpoint == Endpoint::chat_completions)
      choice["message"] = {{"role", "assistant"}, {"content", text_of(result, i)}};
    else
      choice["text"] = text_of(result, i);
    choices.push_back(std::move(choice));
  }
  out["choices"] = std::move(choices);
  out["usage"] = usage(result);
  return out;
}

namespace {
json chunk_with(const ResponseHeader& h, int index, json delta_or_text, json reason, json logprobs = nullptr) {
  json out = envelope(h, true);
  json choice = {{"index", index}, {"logprobs", std::move(logprobs)}, {"finish_reason", std::move(reason)}};
  if (h.endpoint == Endpoint::chat_completions)
    choice["delta"] = std::move(delta_or_text);
  else
    choice["text"] = std::move(delta_or_text);
  out["choices"] = json::array({std::move(choice)});
  return out;
}
}  // namespace

json text_chunk(const ResponseHeader& h, int index, const std::string& text, json logprobs) {
  return chunk_with(h, index, h.endpoint == Endpoint::chat_completions ? json{{"content", text}} : json(text), nullptr,
                    std::move(logprobs));
}

json delta_chunk(const ResponseHeader& h, int index, const kestrel::ChatOutputDelta& d, json logprobs) {
  json delta = json::object();
  if (!d.content.empty()) delta["content"] = d.content;
  if (!d.reasoning_content.empty()) delta["reasoning_content"] = d.reasoning_content;
  if (!d.tool_calls.empty()) {
    json calls = json::array();
    for (const kestrel::ToolCallDelta& t : d.tool_calls) {
      json call = {{"index", t.index}};
      if (!t.id.empty()) {
        call["id"] = t.id;
        call["type"] = "function";
        call["function"] = {{"name", t.name}, {"arguments", t.arguments}};
      } else {
        call["function"] = {{"arguments", t.arguments}};
      }
      calls.push_back(std::move(call));
    }
    delta["tool_calls"] = std::move(calls);
  }
  return chunk_with(h, index, std::move(delta), nullptr, std::move(logprobs));
}

json role_chunk(const ResponseHeader& h, int index) {
  return chunk_with(h, index, {{"role", "assistant"}, {"content", ""}}, nullptr);
}

json finish_chunk(const ResponseHeader& h, int index, kestrel::FinishReason reason, bool tool_calls) {
  return chunk_with(h, index, h.endpoint == Endpoint::chat_completions ? json::object() : json(""),
                    finish_reason(reason, tool_calls));
}

json usage_chunk(const ResponseHeader& h, const kestrel::GenerationResult& result) {
  json out = envelope(h, true);
  out["choices"] = json::array();
  out["usage"] = usage(result);
  return out;
}

std::string to_text(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace kestrel_server
