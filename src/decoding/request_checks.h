// decoding/request_checks.h: validation of generation requests, before any work starts.
#pragma once

#include <cstdint>
#include <vector>

#include "kestrel/decoder.h"

namespace kestrel {

// Checks one request against the model and session limits and returns its prompt ids
// (tokenized when given as text). Errors name the request index and the field at fault.
std::vector<int32_t> checked_prompt(const GenerationRequest& request, size_t index, const Model& model,
                                    const SessionOptions& session);

// Checks a request's SpeculativeOptions against the decoder: draft_model needs a draft
// session, and neither method runs in a tensor / pipeline parallel job.
void check_speculative(const SpeculativeOptions& options, size_t index, const Model& model, bool has_draft);

// Checks BeamSearchOptions and num_return_sequences: beams fit the session's sequences,
// and beam search runs greedy, without stop strings, penalties or speculation.
void check_beams_and_samples(const GenerationRequest& request, size_t index, const Model& model,
                             const SessionOptions& session);

// Checks OutputOptions: top_logprobs in [0, kMaxTopLogprobs], and only with logprobs.
void check_output_options(const OutputOptions& options, size_t index);

// Checks ConstraintOptions: at most one of grammar / json_schema, which must parse (or
// convert), and no beam search, speculative decoding or tensor / pipeline parallel run.
void check_constraint_options(const GenerationRequest& request, size_t index, const Model& model);

}  // namespace kestrel
