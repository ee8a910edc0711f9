#include "decoding/request_checks.h"

#include <cmath>

#include "kestrel/error.h"

namespace kestrel {

namespace {

[[noreturn]] void bad(size_t index, const std::string& what) {
  throw Error(ErrorCategory::invalid_argument, "request " + std::to_string(index) + ": " + what);
}

void check_sampling(const SamplingOptions& o, size_t i) {
  auto finite = [&](float v, const char* field) {
    if (!std::isfinite(v)) bad(i, std::string("SamplingOptions.") + field + " is not finite");
  };
  finite(o.temperature, "temperature");
  finite(o.top_p, "top_p");
  finite(o.min_p, "min_p");
  finite(o.repetition_penalty, "repetition_penalty");
  finite(o.presence_penalty, "presence_penalty");
  finite(o.frequency_penalty, "frequency_penalty");
  if (o.temperature < 0) bad(i, "SamplingOptions.temperature = " + std::to_string(o.temperature) + " (must be >= 0)");
  if (o.top_k < 0) bad(i, "SamplingOptions.top_k = " + std::to_string(o.top_k) + " (must be >= 0)");
  if (!(o.top_p > 0 && o.top_p <= 1)) bad(i, "SamplingOptions.top_p = " + std::to_string(o.top_p) + " (must be in (0, 1])");
  if (!(o.min_p >= 0 && o.min_p <= 1)) bad(i, "SamplingOptions.min_p = " + std::to_string(o.min_p) + " (must be in [0, 1])");
  if (!(o.repetition_penalty > 0))
    bad(i, "SamplingOptions.repetition_penalty = " + std::to_string(o.repetition_penalty) + " (must be > 0)");
}

}  // namespace

std::vector<int32_t> checked_prompt(const GenerationRequest& request, size_t i, const Model& model,
                                    const SessionOptions& session) {
  check_sampling(request.sampling, i);
  const StopOptions& stop = request.stop;
  if (stop.max_new_tokens < 1)
    bad(i, "StopOptions.max_new_tokens = " + std::to_string(stop.max_new_tokens) + " (must be >= 1)");
  for (const auto& s : stop.stop_strings)
    if (s.empty()) bad(i, "StopOptions.stop_strings holds an empty string");
  const int vocab = model.config().vocab_size;
  for (int32_t id : stop.stop_token_ids)
    if (id < 0 || id >= vocab)
      bad(i, "StopOptions.stop_token_ids holds " + std::to_string(id) + " (vocabulary is [0, " +
                 std::to_string(vocab) + "))");

  std::vector<int32_t> ids = request.prompt_ids;
  if (ids.empty()) {
    try {
      ids = model.tokenizer().encode(request.prompt);
    } catch (const Error& e) {
      bad(i, "prompt: " + e.message());  // a byte the vocabulary cannot encode
    }
  }
  if (ids.empty()) bad(i, "the prompt is empty (set prompt or prompt_ids)");
  for (int32_t id : ids)
    if (id < 0 || id >= vocab)
      bad(i, "prompt token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  const int64_t total = static_cast<int64_t>(ids.size()) + stop.max_new_tokens;
  if (total > session.max_sequence_tokens)
    throw Error(ErrorCategory::limit,
                "request " + std::to_string(i) + ": prompt of " + std::to_string(ids.size()) +
                    " tokens + max_new_tokens " + std::to_string(stop.max_new_tokens) + " = " +
                    std::to_string(total) + " exceeds SessionOptions.max_sequence_tokens " +
                    std::to_string(session.max_sequence_tokens));
  return ids;
}

}  // namespace kestrel
