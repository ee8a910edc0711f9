#include "decoding/step_runner.h"

#include <algorithm>
#include <cstring>

#include "layers/transformer.h"
#include "parallel/parallel_context.h"

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

// Splits the step's sequences into up to `parts` contiguous micro-batches of about equal
// tokens (each at least one sequence), so pipeline stages can overlap.
std::vector<MicroBatch> split_micro_batches(std::span<const StepSlice> slices, int parts) {
  const int B = static_cast<int>(slices.size());
  parts = std::max(1, std::min(parts, B));
  int total = 0;
  for (const StepSlice& slice : slices) total += slice.count;
  std::vector<MicroBatch> out;
  MicroBatch mb;
  int tokens_before = 0;
  for (int i = 0; i < B; ++i) {
    const StepSlice& slice = slices[i];
    if (mb.sequences == 0) {
      mb.seq_begin = i;
      mb.token_begin = tokens_before;
    }
    mb.sequences += 1;
    mb.tokens += slice.count;
    mb.max_new_tokens = std::max(mb.max_new_tokens, slice.count);
    mb.max_total_tokens = std::max(mb.max_total_tokens, slice.n_past + slice.count);
    tokens_before += slice.count;
    const int groups_left = parts - static_cast<int>(out.size()) - 1;  // after this one
    const int sequences_left = B - i - 1;
    const bool reached_share =
        static_cast<int64_t>(tokens_before) * parts >= static_cast<int64_t>(total) * (static_cast<int>(out.size()) + 1);
    if (i == B - 1 || (groups_left > 0 && (reached_share || sequences_left == groups_left))) {
      out.push_back(mb);
      mb = MicroBatch{};
    }
  }
  return out;
}

}  // namespace

int StepRunner::run(std::span<const StepSlice> slices, bool generation) {
  Backend& backend = s_.backend();
  const int B = static_cast<int>(slices.size());
  const int width = s_.max_blocks_per_seq;
  ids_.clear();
  positions_.clear();
  offsets_.clear();
  n_past_.clear();
  tables_.assign(static_cast<size_t>(B) * width, 0);
  logit_rows_.clear();
  StepShape shape;
  shape.sequences = B;
  shape.generation = generation;
  shape.micro_batches = split_micro_batches(slices, s_.shard().pp);
  for (int i = 0; i < B; ++i) {
    const StepSlice& slice = slices[i];
    if (slice.logits < 0 || slice.logits > slice.count)
      throw Error(ErrorCategory::internal, "step slice wants logits of tokens it does not have");
    for (int j = 0; j < slice.count; ++j) {
      if (j >= slice.count - slice.logits) logit_rows_.push_back(static_cast<int32_t>(ids_.size()));
      ids_.push_back(slice.tokens[j]);
      positions_.push_back(slice.n_past + j);
    }
    n_past_.push_back(slice.n_past);
    std::copy(slice.block_table->begin(), slice.block_table->end(), tables_.begin() + static_cast<size_t>(i) * width);
  }
  // Token offsets of each micro-batch, from 0 at its first row (see MicroBatch).
  for (const MicroBatch& mb : shape.micro_batches) {
    int32_t offset = 0;
    offsets_.push_back(0);
    for (int i = mb.seq_begin; i < mb.seq_begin + mb.sequences; ++i) offsets_.push_back(offset += slices[i].count);
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

std::vector<int32_t> StepRunner::sample(std::span<const SampleInput> inputs, int first_row) {
  const int B = static_cast<int>(inputs.size());
  std::vector<int32_t> out(B);
  ParallelContext& parallel = s_.parallel();
  // In a parallel run the last stage samples (every one of its tensor ranks holds the
  // gathered logits and draws the same tokens) and its first rank tells every rank.
  // The sampling buffers hold max_sequences rows: more rows go in chunks.
  if (s_.shard().last_stage())
    for (int done = 0; done < B;) {
      const int n = std::min(B - done, s_.options.max_sequences);
      sample_here(inputs.subspan(done, n), first_row + done, out.data() + done);
      done += n;
    }
  if (parallel.parallel()) {
    wait_for_peers();
    parallel.world->broadcast(TensorView(out.data(), DType::i32, {B}), parallel.sampler_rank());
  }
  return out;
}

void StepRunner::wait_for_peers() {
  ParallelContext& parallel = s_.parallel();
  if (parallel.tensor) parallel.tensor->synchronize();
  if (parallel.pipeline) parallel.pipeline->synchronize();
}

void StepRunner::agree_with_rank0(std::vector<uint8_t>& flags) {
  ParallelContext& parallel = s_.parallel();
  if (!parallel.parallel() || flags.empty()) return;
  parallel.world->broadcast(TensorView(flags.data(), DType::i8, {static_cast<int64_t>(flags.size())}), 0);
}

void StepRunner::sample_here(std::span<const SampleInput> inputs, int first_row, int32_t* out) {
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
  backend.sample(s_.buf(Buf::logits).rows(first_row, B), batch, tokens);

  TensorView host(out, DType::i32, {B});
  backend.copy(host, tokens);
  backend.synchronize();
}

void StepRunner::copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) {
  Backend& backend = s_.backend();
  for (size_t done = 0; done < pairs.size();) {
    const size_t n = std::min(pairs.size() - done, static_cast<size_t>(s_.options.max_sequences));
    copies_.clear();
    for (size_t i = done; i < done + n; ++i) {
      copies_.push_back(pairs[i].first);
      copies_.push_back(pairs[i].second);
    }
    upload(backend, s_.buf(Buf::kv_copies), copies_);
    const TensorView view = s_.buf(Buf::kv_copies).rows(0, static_cast<int64_t>(n));
    for (int layer = 0; layer < s_.kv->shape().num_layers; ++layer) backend.copy_kv_blocks(s_.kv->layer(layer), view);
    done += n;
  }
}

void StepRunner::duplicate_logits_row(int from, int to) {
  if (!s_.shard().last_stage()) return;  // the logits live on the last stage
  const TensorView logits = s_.buf(Buf::logits);
  s_.backend().copy(logits.rows(to, 1), logits.rows(from, 1));
}

void StepRunner::read_logits(int rows, float* out) {
  TensorView src = s_.buf(Buf::logits).rows(0, rows);
  TensorView dst = src;
  dst.data = out;
  dst.device = Device::cpu();
  ParallelContext& parallel = s_.parallel();
  if (s_.shard().last_stage()) {
    s_.backend().copy(dst, src);
    s_.backend().synchronize();
  }
  if (parallel.parallel()) {  // the logits live on the last stage
    wait_for_peers();
    parallel.world->broadcast(dst, parallel.sampler_rank());
  }
}

void StepRunner::read_logits_row(int row, float* out) {
  if (s_.parallel().parallel())
    throw Error(ErrorCategory::internal, "read_logits_row is for single-process runs");
  TensorView src = s_.buf(Buf::logits).rows(row, 1);
  TensorView dst = src;
  dst.data = out;
  dst.device = Device::cpu();
  s_.backend().copy(dst, src);
  s_.backend().synchronize();
}

}  // namespace kestrel
