#include "decoding/step_runner.h"

#include <algorithm>
#include <cstring>

#include "layers/transformer.h"

namespace kestrel {

using detail::Buf;

namespace {

// Copies a host vector into the first elements of a session buffer.
void upload(Backend& backend, const TensorView& dst, const std::vector<int32_t>& src) {
  if (src.empty()) return;
  TensorView d = dst.reshape({dst.numel()}).rows(0, static_cast<int64_t>(src.size()));
  TensorView h = d;
  h.data = const_cast<int32_t*>(src.data());
  h.device = Device::cpu();
  backend.copy(d, h);
}

}  // namespace

int StepRunner::run(std::span<const StepSlice> slices, bool generation, bool all_logits) {
  Backend& backend = s_.backend();
  const int B = static_cast<int>(slices.size());
  const int width = s_.max_blocks_per_seq;
  ids_.clear();
  positions_.clear();
  offsets_.assign(1, 0);
  n_past_.clear();
  tables_.assign(static_cast<size_t>(B) * width, 0);
  logit_rows_.clear();
  StepShape shape;
  shape.sequences = B;
  shape.generation = generation;
  for (int i = 0; i < B; ++i) {
    const StepSlice& slice = slices[i];
    for (int j = 0; j < slice.count; ++j) {
      if (all_logits) logit_rows_.push_back(static_cast<int32_t>(ids_.size()));
      ids_.push_back(slice.tokens[j]);
      positions_.push_back(slice.n_past + j);
    }
    if (slice.wants_logits && !all_logits) logit_rows_.push_back(static_cast<int32_t>(ids_.size()) - 1);
    offsets_.push_back(static_cast<int32_t>(ids_.size()));
    n_past_.push_back(slice.n_past);
    std::copy(slice.block_table->begin(), slice.block_table->end(), tables_.begin() + static_cast<size_t>(i) * width);
    shape.max_new_tokens = std::max(shape.max_new_tokens, slice.count);
    shape.max_total_tokens = std::max(shape.max_total_tokens, slice.n_past + slice.count);
  }
  shape.tokens = static_cast<int>(ids_.size());
  shape.logit_rows = static_cast<int>(logit_rows_.size());
  if (shape.tokens > s_.options.max_step_tokens || B > s_.options.max_sequences ||
      shape.logit_rows > s_.logit_rows)
    throw Error(ErrorCategory::internal, "step exceeds the session's buffers");

  upload(backend, s_.buf(Buf::ids), ids_);
  upload(backend, s_.buf(Buf::positions), positions_);
  upload(backend, s_.buf(Buf::token_offsets), offsets_);
  upload(backend, s_.buf(Buf::n_past), n_past_);
  upload(backend, s_.buf(Buf::block_tables), tables_);
  upload(backend, s_.buf(Buf::logit_rows), logit_rows_);
  forward_step(s_, shape);
  return shape.logit_rows;
}

std::vector<int32_t> StepRunner::sample(std::span<const SampleInput> inputs) {
  Backend& backend = s_.backend();
  const int B = static_cast<int>(inputs.size());
  const int L = s_.options.max_sequence_tokens;
  rows_.resize(B);
  history_.assign(static_cast<size_t>(B) * L, 0);
  history_lengths_.resize(B);
  prompt_lengths_.resize(B);
  for (int i = 0; i < B; ++i) {
    const SampleInput& in = inputs[i];
    rows_[i] = in.row;
    int32_t* h = history_.data() + static_cast<size_t>(i) * L;
    std::copy(in.prompt.begin(), in.prompt.end(), h);
    std::copy(in.generated.begin(), in.generated.end(), h + in.prompt.size());
    history_lengths_[i] = static_cast<int32_t>(in.prompt.size() + in.generated.size());
    prompt_lengths_[i] = static_cast<int32_t>(in.prompt.size());
  }
  TensorView rows_dev = s_.buf(Buf::sampling_rows).rows(0, static_cast<int64_t>(B * sizeof(SamplingRow)));
  TensorView rows_host = rows_dev;
  rows_host.data = rows_.data();
  rows_host.device = Device::cpu();
  backend.copy(rows_dev, rows_host);
  upload(backend, s_.buf(Buf::history), history_);
  upload(backend, s_.buf(Buf::history_lengths), history_lengths_);
  upload(backend, s_.buf(Buf::prompt_lengths), prompt_lengths_);

  SamplingBatch batch;
  batch.n_seqs = B;
  batch.rows = rows_dev;
  batch.history = s_.buf(Buf::history).rows(0, B);
  batch.history_lengths = s_.buf(Buf::history_lengths).rows(0, B);
  batch.prompt_lengths = s_.buf(Buf::prompt_lengths).rows(0, B);
  TensorView tokens = s_.buf(Buf::sampled).rows(0, B);
  backend.sample(s_.buf(Buf::logits).rows(0, B), batch, tokens);

  std::vector<int32_t> out(B);
  TensorView host(out.data(), DType::i32, {B});
  backend.copy(host, tokens);
  backend.synchronize();
  return out;
}

void StepRunner::read_logits(int rows, float* out) {
  TensorView src = s_.buf(Buf::logits).rows(0, rows);
  TensorView dst = src;
  dst.data = out;
  dst.device = Device::cpu();
  s_.backend().copy(dst, src);
  s_.backend().synchronize();
}

}  // namespace kestrel
