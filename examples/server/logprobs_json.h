// server/logprobs_json.h: OpenAI's `logprobs` objects from the engine's per-token
// log-probabilities (kestrel::OutputOptions), whole and per streamed chunk.
//   /v1/completions:      {"tokens": [str], "token_logprobs": [float],
//                          "top_logprobs": [{str: float}], "text_offset": [int]}
//   /v1/chat/completions: {"content": [{"token", "logprob", "bytes": [int],
//                          "top_logprobs": [{"token", "logprob", "bytes"}]}]}
// A token is reported when its first byte is part of the returned text: tokens that a stop
// string cut away entirely, and the stop token that ended the sequence (it has no text),
// are not. So the reported tokens spell the returned text (the last one possibly running
// past a stop string's start). text_offset counts characters (code points) of the
// completion's text before the token, as vLLM does; a token's string is its bytes
// (invalid UTF-8, e.g. half a character, becomes U+FFFD in the JSON; chat's `bytes` keeps
// them exact). Completions' top_logprobs hold the `logprobs` most likely tokens plus the
// chosen one when it is not among them (as OpenAI's legacy API); chat's hold exactly
// top_logprobs entries.
#pragma once

#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>

#include "openai_request.h"

namespace kestrel_server {

// One completion's tokens, in order; entries come out as their text becomes final.
class LogprobsAligner {
 public:
  LogprobsAligner(const kestrel::Tokenizer& tokenizer, Endpoint endpoint)
      : tokenizer_(tokenizer), endpoint_(endpoint) {}
  void add(int32_t token, const kestrel::TokenLogprobs& logprobs);
  // The entries of the tokens not yet released whose first byte is in `text` (all of the
  // completion's final text so far), in the endpoint's shape (empty lists when none).
  nlohmann::json release(std::string_view text);

 private:
  struct Pending {
    int32_t token;
    kestrel::TokenLogprobs logprobs;
    size_t start;  // byte offset of its first byte in the completion's text
  };
  const kestrel::Tokenizer& tokenizer_;
  Endpoint endpoint_;
  std::vector<Pending> pending_;
  size_t bytes_ = 0;    // bytes of all tokens added
  size_t counted_ = 0;  // text_offset: bytes of the text counted so far,
  size_t chars_ = 0;    // and the characters among them
};

// The logprobs object of a finished completion (stream false).
nlohmann::json logprobs_json(const kestrel::Tokenizer& tokenizer, Endpoint endpoint, const std::vector<int32_t>& tokens,
                             const std::vector<kestrel::TokenLogprobs>& logprobs, const std::string& text);

}  // namespace kestrel_server
