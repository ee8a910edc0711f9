// decoding/step_runner.h: stages one model step in the session's buffers, runs it, and
// samples. The decoder decides what goes into a step; this file knows the buffer layout.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "backend.h"
#include "core/session_state.h"

namespace kestrel {

// One sequence's part of a step: `count` new tokens starting at `tokens`, appended after
// the `n_past` positions its cache already holds.
struct StepSlice {
  const int32_t* tokens = nullptr;
  int count = 0;
  int n_past = 0;
  const std::vector<int32_t>* block_table = nullptr;
  int logits = 0;  // logits rows wanted for its last `logits` new tokens (0 .. count)
};

// What the sampler needs of a sequence whose logits row was produced.
struct SampleInput {
  SamplingRow row;
  std::span<const int32_t> prompt;
  std::span<const int32_t> generated;
};

class StepRunner {
 public:
  explicit StepRunner(detail::SessionState& session) : s_(session) {}

  // Runs one step; returns the number of logits rows: each slice's `logits` rows in slice
  // order, at most the session's logit_rows.
  int run(std::span<const StepSlice> slices, bool generation);
  // Samples one token for each of the logits rows [first_row, first_row + inputs.size())
  // (in chunks of the session's max_sequences). In a parallel run every rank gets the
  // tokens the last stage chose.
  std::vector<int32_t> sample(std::span<const SampleInput> inputs, int first_row = 0);
  // Copies KV blocks (shared block, its fresh copy) in every layer: the copy-on-write that
  // PagedKvCache::make_writable asks for, at most max_sequences pairs at a time.
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs);
  // Logits row `to` becomes a copy of row `from` (parallel samples of one prompt).
  void duplicate_logits_row(int from, int to);
  // Copies logits rows [0, rows) to the host, row-major [rows, V] (on every rank).
  void read_logits(int rows, float* out);
  // Copies logits row `row` to the host, [V] (single-process runs: constrained decoding).
  void read_logits_row(int row, float* out);
  // In a parallel run, replaces `flags` by rank 0's, so that decisions taken on the host
  // (a streaming callback cancelling a request) are the same on every rank.
  void agree_with_rank0(std::vector<uint8_t>& flags);

 private:
  void sample_here(std::span<const SampleInput> inputs, int first_row, int32_t* out);
  // Waits (bounded) for this rank's queued communication before the host reads results.
  void wait_for_peers();
  detail::SessionState& s_;
  // Host staging, reused every step (no allocation once the largest step has been seen).
  std::vector<int32_t> ids_, positions_, offsets_, n_past_, tables_, logit_rows_, copies_;
  std::vector<SamplingRow> rows_;
  std::vector<int32_t> history_, history_lengths_, prompt_lengths_;
};

}  // namespace kestrel
