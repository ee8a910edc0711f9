// layers/transformer.h: one forward step of a decoder-only transformer.
#pragma once

#include <vector>

#include "core/session_state.h"

namespace kestrel {

// A contiguous group of the step's sequences that crosses the pipeline stages as one unit:
// while stage s + 1 works on micro-batch m, stage s works on m + 1. Its sequences are
// [seq_begin, seq_begin + sequences) of the step and its rows [token_begin, + tokens);
// its token offsets (from 0) are staged at Buf::token_offsets[seq_begin + index].
struct MicroBatch {
  int seq_begin = 0, sequences = 0;
  int token_begin = 0, tokens = 0;
  int max_new_tokens = 0;    // max over its sequences of new tokens in this step
  int max_total_tokens = 0;  // max over its sequences of n_past + new tokens
};

struct StepShape {
  int tokens = 0;           // T: rows staged in Buf::ids / Buf::positions
  int sequences = 0;        // B: sequences staged in token_offsets / n_past / block_tables
  int logit_rows = 0;       // R: rows staged in Buf::logit_rows
  bool generation = false;  // one token per sequence (masked attention) vs context phase
  std::vector<MicroBatch> micro_batches;  // one unless the model is pipelined
};

// Runs this rank's layers over the step staged in the session's buffers. The first stage
// embeds the tokens, the others receive the hidden states from the stage before; the last
// stage leaves the logits of the requested rows in Buf::logits [R, V], the others send
// their hidden states on. Every micro-batch uses its own rows of the same buffers, which
// all layers reuse.
void forward_step(detail::SessionState& session, const StepShape& step);

}  // namespace kestrel
