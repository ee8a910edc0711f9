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

json finish_reason(kestrel::FinishReason reason) {
  switch (reason) {
    case kestrel::FinishReason::stop_token:
    case kestrel::FinishReason::stop_string: return "stop";
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

json full_response(const ResponseHeader& h, const kestrel::GenerationResult& result) {
  json out = envelope(h, false);
  json choices = json::array();
  for (int i = 0; i < completions(result); ++i) {
    json choice = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", finish_reason(finish_of(result, i))}};
    if (h.logprobs_tokenizer) {
      const bool own = result.sequences.empty();
      const auto& tokens = own ? result.tokens : result.sequences[static_cast<size_t>(i)].tokens;
      const auto& logprobs = own ? result.logprobs : result.sequences[static_cast<size_t>(i)].logprobs;
      choice["logprobs"] = logprobs_json(*h.logprobs_tokenizer, h.endpoint, tokens, logprobs, text_of(result, i));
    }
    if (h.endpoint == Endpoint::chat_completions)
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

json role_chunk(const ResponseHeader& h, int index) {
  return chunk_with(h, index, {{"role", "assistant"}, {"content", ""}}, nullptr);
}

json finish_chunk(const ResponseHeader& h, int index, kestrel::FinishReason reason) {
  return chunk_with(h, index, h.endpoint == Endpoint::chat_completions ? json::object() : json(""),
                    finish_reason(reason));
}

json usage_chunk(const ResponseHeader& h, const kestrel::GenerationResult& result) {
  json out = envelope(h, true);
  out["choices"] = json::array();
  out["usage"] = usage(result);
  return out;
}

std::string to_text(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace kestrel_server
