// Inputs shared by the CPU and CUDA backend tests, so both run exactly the same cases.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "backend.h"

namespace kestrel::testing {

// Shuffled, non-contiguous block tables for sequences of `lengths` positions: blocks of
// `block_size`, `spare` blocks nobody owns, one unused (-1) entry at the end of each table.
struct PagedLayout {
  int num_blocks = 0;
  int max_blocks = 0;  // entries per table
  std::vector<int32_t> tables;  // [B, max_blocks]

  PagedLayout(const std::vector<int>& lengths, int block_size, int spare, uint64_t seed) {
    const int B = static_cast<int>(lengths.size());
    num_blocks = spare;
    for (int len : lengths) {
      const int blocks = (len + block_size - 1) / block_size;
      num_blocks += blocks;
      max_blocks = std::max(max_blocks, blocks + 1);
    }
    std::vector<int32_t> ids(num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(static_cast<unsigned>(seed)));
    tables.assign(static_cast<size_t>(B) * max_blocks, -1);
    size_t next = 0;
    for (int i = 0; i < B; ++i)
      for (int b = 0; b < (lengths[i] + block_size - 1) / block_size; ++b)
        tables[static_cast<size_t>(i) * max_blocks + b] = ids[next++];
  }
};

// One sampling call's inputs: B rows of V logits with their settings and histories.
struct SampleCall {
  int V = 0;
  std::vector<float> logits;
  std::vector<SamplingRow> rows;
  std::vector<std::vector<int32_t>> histories;
  std::vector<int32_t> prompt_lengths;

  // Adds a row with these logits, settings, history and prompt length.
  void add(const std::vector<float>& l, SamplingRow r, std::vector<int32_t> history = {},
           int prompt_length = 0) {
    V = static_cast<int>(l.size());
    logits.insert(logits.end(), l.begin(), l.end());
    rows.push_back(r);
    histories.push_back(std::move(history));
    prompt_lengths.push_back(prompt_length);
  }
  int B() const { return static_cast<int>(rows.size()); }

  // Histories flattened to [B, L] (L >= 1) with their lengths.
  int64_t flatten(std::vector<int32_t>& history, std::vector<int32_t>& lengths) const {
    int64_t L = 1;
    for (const auto& h : histories) L = std::max<int64_t>(L, static_cast<int64_t>(h.size()));
    history.assign(static_cast<size_t>(B() * L), 0);
    lengths.assign(B(), 0);
    for (int i = 0; i < B(); ++i) {
      std::copy(histories[i].begin(), histories[i].end(), history.begin() + i * L);
      lengths[i] = static_cast<int32_t>(histories[i].size());
    }
    return L;
  }

  // Runs the call on a host backend over `out_logits` (a copy of `logits`, or `logits`
  // itself; penalties and temperature are applied to it in place); returns the tokens.
  std::vector<int32_t> run_on_host(Backend& backend, std::vector<float>& out_logits) const {
    const int b = B();
    std::vector<int32_t> history, lengths, prompts = prompt_lengths, tokens(b, -1);
    const int64_t L = flatten(history, lengths);
    std::vector<int8_t> row_bytes(b * sizeof(SamplingRow));
    std::memcpy(row_bytes.data(), static_cast<const void*>(rows.data()), row_bytes.size());
    SamplingBatch batch;
    batch.n_seqs = b;
    batch.rows = TensorView(row_bytes.data(), DType::i8, {static_cast<int64_t>(row_bytes.size())});
    batch.history = TensorView(history.data(), DType::i32, {b, L});
    batch.history_lengths = TensorView(lengths.data(), DType::i32, {b});
    batch.prompt_lengths = TensorView(prompts.data(), DType::i32, {b});
    backend.sample(TensorView(out_logits.data(), DType::f32, {b, V}), batch,
                   TensorView(tokens.data(), DType::i32, {b}));
    return tokens;
  }
  std::vector<int32_t> run(Backend& backend) { return run_on_host(backend, logits); }
};

}  // namespace kestrel::testing
