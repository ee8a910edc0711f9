// decoding/beam_search.h: beam search over a session, with Hugging Face generate()'s
// semantics (BeamSearchScorer / BeamHypotheses in transformers 4.44), the beams sharing
// their prompt's KV blocks copy-on-write.
#pragma once

#include <cstdint>
#include <vector>

#include "core/session_state.h"
#include "decoding/step_runner.h"
#include "kestrel/decoder.h"

namespace kestrel {

// Runs one request with request.beam.num_beams > 1 to completion; its beams take that many
// of the session's sequence slots. `prompt` is its checked prompt. On KV-cache exhaustion
// the result finishes with FinishReason::error (every block goes back to the pool).
// `on_token` sees the best sequence's tokens once the search has ended.
GenerationResult beam_search(detail::SessionState& session, StepRunner& runner, const GenerationRequest& request,
                             const std::vector<int32_t>& prompt, size_t index, const StreamCallback& on_token);

}  // namespace kestrel
