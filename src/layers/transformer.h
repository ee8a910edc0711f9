// layers/transformer.h: one forward step of a decoder-only transformer.
#pragma once

#include "core/session_state.h"

namespace kestrel {

struct StepShape {
  int tokens = 0;           // T: rows staged in Buf::ids / Buf::positions
  int sequences = 0;        // B: sequences staged in token_offsets / n_past / block_tables
  int logit_rows = 0;       // R: rows staged in Buf::logit_rows
  bool generation = false;  // one token per sequence (masked attention) vs context phase
  int max_new_tokens = 0;   // max over sequences of new tokens in this step
  int max_total_tokens = 0; // max over sequences of n_past + new tokens
};

// Runs every layer over the step staged in the session's buffers and leaves the logits
// of the requested rows in Buf::logits [R, V]. Reuses the same buffers for all layers.
void forward_step(detail::SessionState& session, const StepShape& step);

}  // namespace kestrel
