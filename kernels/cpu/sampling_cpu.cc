// kernels/cpu/sampling_cpu.cc: penalties, temperature and token choice, one row per sequence.
//
// For row i with settings r (a SamplingRow) and logits l[0 : V], in this order:
//   1. repetition penalty (r.repetition_penalty != 1), Hugging Face style, once per distinct
//      token t of history[i, 0 : history_lengths[i]] (prompt and generated):
//        l[t] = l[t] > 0 ? l[t] / penalty : l[t] * penalty
//   2. presence / frequency penalties (OpenAI style) over the generated part
//      history[i, prompt_lengths[i] : history_lengths[i]], with c = count of t there:
//        l[t] -= presence * (c > 0) + frequency * c      (computed in f32)
//   3. temperature <= 0: the token is argmax l (the lowest id on ties); stop.
//   4. l /= temperature. Steps 1-4 are written back to the logits (in place).
//   5. Candidates are sorted by l descending, ties by lower id; p = softmax(l) in double.
//   6. top-k (r.top_k > 0): keep the first k candidates.
//   7. top-p (r.top_p < 1): renormalize over the kept candidates (as Hugging Face's chained
//      warpers do), keep the shortest prefix whose cumulative probability is >= top_p.
//   8. min-p (r.min_p > 0): keep the prefix of candidates with p >= min_p * p_max.
//      Every filter keeps at least the first candidate.
//   9. With u = sampling_uniform(r.seed, r.step) and Z the sum of the kept p, pick the
//      first kept candidate (in the sorted order) whose cumulative p exceeds u * Z.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/sampling_candidates.h"
#include "cpu/thread_pool.h"

namespace kestrel::cpu {

namespace {

struct RowInputs {
  SamplingRow r;
  const int32_t* history;  // the row's history
  int32_t history_length;
  int32_t prompt_length;
};


int32_t argmax(const float* l, int64_t V) {
  int64_t best = 0;
  for (int64_t j = 1; j < V; ++j)
    if (l[j] > l[best]) best = j;
  return static_cast<int32_t>(best);
}

// Steps 5-9 on logits already divided by the temperature.
int32_t draw(const float* l, int64_t V, const SamplingRow& r, std::vector<int32_t>& order) {
  const float max_logit = *std::max_element(l, l + V);
  Candidates c(l, V, max_logit, order);
  if (!std::isfinite(max_logit)) return c.id(0);  // all -inf, or an +inf that wins outright

  const auto [n, kept_sum] = keep_candidates(c, l, V, max_logit, r);
  const double target = sampling_uniform(r.seed, r.step) * kept_sum;
  double cum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    cum += c.p(j);
    if (cum > target) return c.id(j);
  }
  return c.id(n - 1);  // rounding left u * Z at the very top
}

}  // namespace

// logits: [B, V] f32, in place; rows: B SamplingRow structs as i8 bytes; history: [B,
// max_history] i32; history_lengths, prompt_lengths: [B] i32; tokens: [B] i32.
void sample(TensorView logits, const SamplingBatch& batch, TensorView tokens, int threads) {
  const char* op = "sample";
  const int B = batch.n_seqs;
  if (B < 0) fail(op, "n_seqs is negative");
  expect_tensor(logits, DType::f32, {B, -1}, op, "logits");
  const int64_t V = logits.dim(1);
  if (V <= 0) fail(op, "logits " + logits.shape_string() + " has no vocabulary");
  expect_tensor(tokens, DType::i32, {B}, op, "tokens");
  expect_tensor(batch.rows, DType::i8, {-1}, op, "rows");
  if (batch.rows.bytes() != B * sizeof(SamplingRow))
    fail(op, "rows " + batch.rows.shape_string() + " should hold " + std::to_string(B) +
                 " SamplingRow structs of " + std::to_string(sizeof(SamplingRow)) + " bytes");
  expect_tensor(batch.history, DType::i32, {B, -1}, op, "history");
  expect_tensor(batch.history_lengths, DType::i32, {B}, op, "history_lengths");
  expect_tensor(batch.prompt_lengths, DType::i32, {B}, op, "prompt_lengths");
  const int64_t max_history = batch.history.dim(1);

  // Validate every row before the parallel loop (nothing may throw inside it).
  std::vector<RowInputs> inputs(static_cast<size_t>(B));
  const int32_t* history = batch.history.ptr<int32_t>();
  for (int i = 0; i < B; ++i) {
    RowInputs& in = inputs[i];
    std::memcpy(static_cast<void*>(&in.r), batch.rows.ptr<int8_t>() + i * sizeof(SamplingRow),
                sizeof(SamplingRow));
    in.history = history + i * max_history;
    in.history_length = batch.history_lengths.ptr<int32_t>()[i];
    in.prompt_length = batch.prompt_lengths.ptr<int32_t>()[i];
    const std::string who = "row " + std::to_string(i);
    if (in.history_length < 0 || in.history_length > max_history || in.prompt_length < 0 ||
        in.prompt_length > in.history_length)
      fail(op, who + ": need 0 <= prompt_length (" + std::to_string(in.prompt_length) +
                   ") <= history_length (" + std::to_string(in.history_length) +
                   ") <= max_history (" + std::to_string(max_history) + ")");
    for (int32_t j = 0; j < in.history_length; ++j)
      if (in.history[j] < 0 || in.history[j] >= V)
        fail(op, who + ": history token " + std::to_string(in.history[j]) +
                     " is outside the vocabulary of " + std::to_string(V));
    const SamplingRow& r = in.r;
    if (std::isnan(r.temperature) || r.top_k < 0 || std::isnan(r.top_p) || std::isnan(r.min_p) ||
        !(r.repetition_penalty > 0.0f) || !std::isfinite(r.presence_penalty) ||
        !std::isfinite(r.frequency_penalty))
      fail(op, who + ": invalid settings (temperature " + std::to_string(r.temperature) +
                   ", top_k " + std::to_string(r.top_k) + ", top_p " + std::to_string(r.top_p) +
                   ", min_p " + std::to_string(r.min_p) + ", repetition_penalty " +
                   std::to_string(r.repetition_penalty) + ")");
  }

  float* all_logits = logits.ptr<float>();
  int32_t* out = tokens.ptr<int32_t>();
  std::vector<char> has_nan(static_cast<size_t>(B), 0);
  parallel_for(threads_for(B * V, threads), B, 1, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<int32_t> scratch, order;  // per thread, reused across calls
    for (int64_t i = i0; i < i1; ++i) {
      float* l = all_logits + i * V;
      const RowInputs& in = inputs[i];
      if (std::any_of(l, l + V, [](float x) { return std::isnan(x); })) {
        has_nan[i] = 1;
        continue;
      }
      apply_penalties(l, in.r, in.history, in.history_length, in.prompt_length, scratch);
      if (in.r.temperature <= 0.0f) {
        out[i] = argmax(l, V);
        continue;
      }
      for (int64_t j = 0; j < V; ++j) l[j] /= in.r.temperature;
      out[i] = draw(l, V, in.r, order);
    }
  });
  for (int i = 0; i < B; ++i)
    if (has_nan[i]) fail(op, "logits row " + std::to_string(i) + " contains NaN");
}

}  // namespace kestrel::cpu
