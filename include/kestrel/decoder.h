// kestrel/decoder.h: text generation over a session.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kestrel/session.h"

namespace kestrel {

// How the next token is chosen. Runtime settings: they live with each request.
struct SamplingOptions {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  float repetition_penalty = 1.0f;  // > 1 discourages tokens already in prompt or output
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;         // same seed, same tokens
};

// When generation of one request ends.
struct StopOptions {
  int max_new_tokens = 64;
  bool stop_at_eos = true;                  // the tokenizer's end-of-sequence token
  std::vector<int32_t> stop_token_ids;      // extra stop tokens
  std::vector<std::string> stop_strings;    // never streamed out, even when split across tokens
};

struct GenerationRequest {
  std::string prompt;                        // used when prompt_ids is empty
  std::vector<int32_t> prompt_ids;           // pre-tokenized prompt
  SamplingOptions sampling;
  StopOptions stop;
};

enum class FinishReason { length, stop_token, stop_string, cancelled, error };
const char* to_string(FinishReason reason) noexcept;

struct GenerationResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> tokens;  // generated ids, including a stop token that ended it
  std::string text;             // generated text, without stop token or stop string
  FinishReason finish = FinishReason::length;
  std::string error;            // set when finish == error (e.g. KV cache exhausted)
  double prompt_seconds = 0.0;  // context phase, including the first token
  double decode_seconds = 0.0;  // generation phase
};

// One streamed token of one request. `text` is the newly final text (possibly empty: bytes
// held back because they may start a stop string or end mid UTF-8 character).
struct StreamEvent {
  size_t request = 0;  // index into the requests passed to generate()
  int32_t token = 0;
  std::string_view text;
};
// Return false to cancel that request (it finishes with FinishReason::cancelled). In a
// tensor / pipeline parallel run the callback runs on every rank and rank 0's answer
// decides for all of them.
using StreamCallback = std::function<bool(const StreamEvent&)>;

class Decoder {
 public:
  explicit Decoder(Session& session);

  // Runs all requests to completion, up to the session's max_sequences at a time; others
  // join as slots free up. Invalid requests throw Error(invalid_argument / limit) before
  // any work starts; a request that runs out of KV cache finishes with FinishReason::error.
  std::vector<GenerationResult> generate(std::span<const GenerationRequest> requests,
                                         const StreamCallback& on_token = {});
  // One request; throws Error(limit) if it cannot finish for lack of KV cache.
  GenerationResult generate(const GenerationRequest& request,
                            const StreamCallback& on_token = {});

  // Teacher forcing: the logits after every position of `ids`, row-major [ids.size(), vocab].
  std::vector<float> score(std::span<const int32_t> ids);

 private:
  Session& session_;
};

}  // namespace kestrel
