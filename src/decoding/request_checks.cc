#include "decoding/request_checks.h"

#include <cmath>

#include "decoding/constraint.h"
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

void check_speculative(const SpeculativeOptions& o, size_t i, const Model& model, bool has_draft) {
  if (o.method == SpeculativeMethod::none) return;
  const std::string method = std::string("SpeculativeOptions.method = ") + to_string(o.method);
  if (o.num_draft_tokens < 1 || o.num_draft_tokens > 32)
    bad(i, "SpeculativeOptions.num_draft_tokens = " + std::to_string(o.num_draft_tokens) + " (must be in [1, 32])");
  if (o.method == SpeculativeMethod::prompt_lookup) {
    if (o.ngram_min < 1) bad(i, "SpeculativeOptions.ngram_min = " + std::to_string(o.ngram_min) + " (must be >= 1)");
    if (o.ngram_max < o.ngram_min || o.ngram_max > 16)
      bad(i, "SpeculativeOptions.ngram_max = " + std::to_string(o.ngram_max) + " (must be in [ngram_min = " +
                 std::to_string(o.ngram_min) + ", 16])");
  }
  if (o.method == SpeculativeMethod::draft_model && !has_draft)
    bad(i, method + " needs a draft model: construct the Decoder with a draft session");
  const ParallelInfo& p = model.parallel();
  if (p.tensor_parallel * p.pipeline_parallel > 1)
    throw Error(ErrorCategory::unsupported,
                "request " + std::to_string(i) + ": " + method + " is not supported in a tensor / pipeline parallel run (tp " +
                    std::to_string(p.tensor_parallel) + " x pp " + std::to_string(p.pipeline_parallel) + ")");
}

void check_output_options(const OutputOptions& o, size_t i) {
  if (o.top_logprobs < 0 || o.top_logprobs > kMaxTopLogprobs)
    bad(i, "OutputOptions.top_logprobs = " + std::to_string(o.top_logprobs) + " (must be in [0, " +
               std::to_string(kMaxTopLogprobs) + "])");
  if (o.top_logprobs > 0 && !o.logprobs) bad(i, "OutputOptions.top_logprobs > 0 needs OutputOptions.logprobs");
}

void check_beams_and_samples(const GenerationRequest& r, size_t i, const Model& model, const SessionOptions& session) {
  const BeamSearchOptions& b = r.beam;
  const int n = r.num_return_sequences;
  if (b.num_beams < 1 || b.num_beams > session.max_sequences)
    bad(i, "BeamSearchOptions.num_beams = " + std::to_string(b.num_beams) + " (must be in [1, " +
               std::to_string(session.max_sequences) + "], SessionOptions.max_sequences)");
  if (!std::isfinite(b.length_penalty)) bad(i, "BeamSearchOptions.length_penalty is not finite");
  if (b.num_beams == 1) {
    if (n < 1 || n > session.max_sequences)
      bad(i, "GenerationRequest.num_return_sequences = " + std::to_string(n) + " (must be in [1, " +
                 std::to_string(session.max_sequences) + "], SessionOptions.max_sequences)");
    if (n > 1 && r.sampling.temperature <= 0)
      bad(i, "GenerationRequest.num_return_sequences = " + std::to_string(n) +
                 " needs sampling (SamplingOptions.temperature > 0) or beam search (BeamSearchOptions.num_beams > 1)");
    if (n > 1 && r.speculative.method != SpeculativeMethod::none)
      bad(i, "GenerationRequest.num_return_sequences > 1 does not combine with SpeculativeOptions.method");
    return;
  }
  if (n < 1 || n > b.num_beams)
    bad(i, "GenerationRequest.num_return_sequences = " + std::to_string(n) + " (must be in [1, num_beams = " +
               std::to_string(b.num_beams) + "])");
  auto unsupported = [&](const std::string& what) {
    bad(i, what + " does not combine with beam search (BeamSearchOptions.num_beams = " + std::to_string(b.num_beams) + ")");
  };
  const SamplingOptions& s = r.sampling;
  if (s.temperature != 0) unsupported("SamplingOptions.temperature > 0 (sampled beam search)");
  if (s.repetition_penalty != 1 || s.presence_penalty != 0 || s.frequency_penalty != 0)
    unsupported("a SamplingOptions penalty");
  if (!r.stop.stop_strings.empty()) unsupported("StopOptions.stop_strings");
  if (r.speculative.method != SpeculativeMethod::none) unsupported("SpeculativeOptions.method");
  if (r.output.logprobs) unsupported("OutputOptions.logprobs");
  const ParallelInfo& p = model.parallel();
  if (p.tensor_parallel * p.pipeline_parallel > 1)
    throw Error(ErrorCategory::unsupported, "request " + std::to_string(i) +
                                                ": beam search is not supported in a tensor / pipeline parallel run");
}

void check_constraint_options(const GenerationRequest& r, size_t i, const Model& model) {
  const ConstraintOptions& c = r.constraint;
  if (c.grammar.empty() && c.json_schema.empty()) return;
  check_constraint(r, i);  // both set, or a grammar / schema that does not parse
  const std::string field = c.grammar.empty() ? "ConstraintOptions.json_schema" : "ConstraintOptions.grammar";
  if (r.beam.num_beams > 1)
    bad(i, field + " does not combine with beam search (BeamSearchOptions.num_beams = " + std::to_string(r.beam.num_beams) + ")");
  if (r.speculative.method != SpeculativeMethod::none)
    bad(i, field + " does not combine with speculative decoding (SpeculativeOptions.method = " +
               to_string(r.speculative.method) + ")");
  const ParallelInfo& p = model.parallel();
  if (p.tensor_parallel * p.pipeline_parallel > 1)
    throw Error(ErrorCategory::unsupported, "request " + std::to_string(i) + ": " + field +
                                                " is not supported in a tensor / pipeline parallel run");
}

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
