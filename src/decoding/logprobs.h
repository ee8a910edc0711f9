// decoding/logprobs.h: a generated token's log-probability and the top alternatives,
// from its raw logits row (OutputOptions in kestrel/decoder.h says which distribution).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kestrel/decoder.h"

namespace kestrel {

// The log-softmax normalizer of one logits row and its `top` most likely tokens, computed
// once per row before the token is known (sampling may later change the token, e.g. a
// grammar's redraw, not the distribution).
struct RowLogprobs {
  double log_normalizer = 0.0;  // max + log(sum exp(logit - max)), in f64
  std::vector<TokenLogprob> top;

  // One pass over the row for the normalizer, one for the top tokens (a short sorted list:
  // most entries fail the comparison with its last element).
  RowLogprobs(std::span<const float> logits, int top);
  // What is reported for `token`, with the top list.
  TokenLogprobs of(std::span<const float> logits, int32_t token) const;
};

}  // namespace kestrel
