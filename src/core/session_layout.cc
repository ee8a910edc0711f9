#include "core/session_layout.h"

#include <algorithm>

#include "core/session_state.h"
#include "kestrel/error.h"

namespace kestrel::detail {

namespace {

void check_range(int value, int lo, int hi, const char* field) {
  if (value < lo || value > hi)
    throw Error(ErrorCategory::invalid_argument,
                std::string("SessionOptions.") + field + " = " + std::to_string(value) +
                    " (must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "])");
}

// The buffers of the mixture-of-experts block (1 element each for a dense model), the
// experts' scratch by this rank's columns of them (Shard::expert_ffn, shared_ffn).
template <class Spec>
void moe_buffers(const ModelConfig& c, const Shard& shard, DType a, int64_t T, Spec spec) {
  const bool moe = c.num_experts > 0;
  auto dims = [&](std::vector<int64_t> shape) { return moe ? shape : std::vector<int64_t>{1}; };
  const int64_t E = c.num_experts, Tk = T * c.experts_per_token, H = c.hidden_size;
  const int64_t Fe = shard.expert_ffn, Fs = shard.shared_ffn;
  // moe_up / moe_act serve the routed experts and then the shared expert.
  const int64_t up_rows = std::max(Tk * 2 * Fe, T * 2 * Fs), act_rows = std::max(Tk * Fe, T * Fs);
  spec(Buf::moe_logits, "moe_logits", a, dims({T, E}));
  spec(Buf::moe_ids, "moe_ids", DType::i32, dims({Tk}));
  spec(Buf::moe_weights, "moe_weights", DType::f32, dims({Tk}));
  spec(Buf::moe_offsets, "moe_offsets", DType::i32, dims({E + 1}));
  spec(Buf::moe_rows, "moe_rows", DType::i32, dims({Tk}));
  spec(Buf::moe_slot_of, "moe_slot_of", DType::i32, dims({Tk}));
  spec(Buf::moe_x, "moe_x", a, dims({Tk, H}));
  spec(Buf::moe_up, "moe_up", a, dims({up_rows}));
  spec(Buf::moe_act, "moe_act", a, dims({act_rows}));
  spec(Buf::moe_out, "moe_out", a, dims({Tk, H}));
  spec(Buf::moe_shared, "moe_shared", a, Fs > 0 ? dims({T, H}) : std::vector<int64_t>{1});
  spec(Buf::moe_shared_gate, "moe_shared_gate", a, Fs > 0 ? dims({T, 1}) : std::vector<int64_t>{1});
}

}  // namespace

DType resolve_kv_dtype(std::optional<DType> requested, DeviceKind device, DType activations) {
  const DType kv = requested.value_or(device == DeviceKind::cpu ? DType::f16 : activations);
  const bool ok = device == DeviceKind::cpu ? kv == DType::f32 || kv == DType::f16 : kv == activations;
  if (!ok)
    throw Error(ErrorCategory::unsupported,
                std::string("SessionOptions.kv_dtype = ") + to_string(kv) + " on " + to_string(Device{device, 0}) +
                    (device == DeviceKind::cpu ? ": the CPU's KV cache is f32 or f16"
                                               : std::string(": its KV cache is in the activation dtype, ") +
                                                     to_string(activations)));
  return kv;
}

SessionOptions resolve_session_options(const SessionOptions& in, const ModelConfig& config, DeviceKind device,
                                       DType activations) {
  SessionOptions o = in;
  o.kv_dtype = resolve_kv_dtype(o.kv_dtype, device, activations);
  check_range(o.max_sequences, 1, 4096, "max_sequences");
  if (o.max_sequence_tokens == 0) o.max_sequence_tokens = config.max_positions;
  check_range(o.max_sequence_tokens, 1, config.max_positions, "max_sequence_tokens");
  check_range(o.max_step_tokens, o.max_sequences, 1 << 20, "max_step_tokens");
  check_range(o.kv_block_size, 1, 1024, "kv_block_size");
  const int blocks_per_seq = (o.max_sequence_tokens + o.kv_block_size - 1) / o.kv_block_size;
  if (o.kv_blocks == 0) o.kv_blocks = o.max_sequences * blocks_per_seq;
  check_range(o.kv_blocks, 1, 1 << 24, "kv_blocks");
  return o;
}

SessionLayout session_layout(const ModelConfig& c, bool gated_ffn, DType a, DeviceKind device,
                             const SessionOptions& options, const Shard& shard) {
  SessionLayout layout;
  layout.options = resolve_session_options(options, c, device, a);
  const SessionOptions& o = layout.options;
  layout.max_blocks_per_seq = (o.max_sequence_tokens + o.kv_block_size - 1) / o.kv_block_size;
  layout.logit_rows = std::max(o.max_sequences, std::min(o.max_step_tokens, 32));
  layout.kv = KvCacheShape{shard.num_layers(), shard.n_kv_heads, c.head_dim, o.kv_block_size, o.kv_blocks};

  const int64_t T = o.max_step_tokens, B = o.max_sequences, R = layout.logit_rows, H = c.hidden_size;
  const int64_t F = shard.ffn, up = (gated_ffn ? 2 : 1) * F;
  const int64_t V_local = shard.vocab, tp = shard.tp;
  auto& specs = layout.buffers;
  specs.resize(static_cast<size_t>(Buf::count));
  auto spec = [&](Buf b, const char* name, DType d, std::vector<int64_t> shape) {
    specs[static_cast<size_t>(b)] = {name, d, std::move(shape)};
  };
  spec(Buf::ids, "ids", DType::i32, {T});
  spec(Buf::positions, "positions", DType::i32, {T});
  spec(Buf::token_offsets, "token_offsets", DType::i32, {shard.pp > 1 ? 2 * B : B + 1});
  spec(Buf::n_past, "n_past", DType::i32, {B});
  spec(Buf::block_tables, "block_tables", DType::i32, {B, layout.max_blocks_per_seq});
  spec(Buf::logit_rows, "logit_rows", DType::i32, {R});
  spec(Buf::hidden, "hidden", a, {T, H});
  spec(Buf::normed, "normed", a, {T, H});
  spec(Buf::qkv, "qkv", a, {T, static_cast<int64_t>(shard.n_heads + 2 * shard.n_kv_heads) * c.head_dim});
  spec(Buf::attn, "attn", a, {T, static_cast<int64_t>(shard.n_heads) * c.head_dim});
  spec(Buf::proj, "proj", a, {T, H});
  spec(Buf::ffn, "ffn", a, {T, up});
  spec(Buf::ffn_act, "ffn_act", a, gated_ffn ? std::vector<int64_t>{T, F} : std::vector<int64_t>{1});
  spec(Buf::last, "last", a, {R, H});
  spec(Buf::logits, "logits", DType::f32, {R, c.vocab_size});
  spec(Buf::logits_local, "logits_local", DType::f32, tp > 1 ? std::vector<int64_t>{R, V_local} : std::vector<int64_t>{1});
  spec(Buf::gather_scratch, "gather_scratch", DType::f32,
       tp > 1 ? std::vector<int64_t>{tp * R * V_local} : std::vector<int64_t>{1});
  spec(Buf::sampling_rows, "sampling_rows", DType::i8, {B * static_cast<int64_t>(sizeof(SamplingRow))});
  spec(Buf::history, "history", DType::i32, {B, o.max_sequence_tokens});
  spec(Buf::history_lengths, "history_lengths", DType::i32, {B});
  spec(Buf::prompt_lengths, "prompt_lengths", DType::i32, {B});
  spec(Buf::sampled, "sampled", DType::i32, {B});
  spec(Buf::kv_copies, "kv_copies", DType::i32, {B, 2});
  moe_buffers(c, shard, a, T, [&](Buf b, const char* name, DType d, std::vector<int64_t> shape) {
    spec(b, name, d, std::move(shape));
  });
  return layout;
}

}  // namespace kestrel::detail
