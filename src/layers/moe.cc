#include "layers/moe.h"

#include <vector>

#include "kestrel/error.h"
#include "layers/blocks.h"

namespace kestrel {

namespace {

// The leading rows x cols elements of a flat buffer, as a matrix.
TensorView matrix(const TensorView& flat, int64_t rows, int64_t cols) {
  if (rows * cols > flat.numel())
    throw Error(ErrorCategory::internal, "moe: scratch " + flat.shape_string() + " is smaller than [" +
                                             std::to_string(rows) + ", " + std::to_string(cols) + "]");
  return TensorView(flat.data, flat.dtype, {rows, cols}, flat.device);
}

// One expert's (or the shared one's) weights: [gate | up] and down, with their biases (gpt-oss).
struct ExpertFfn {
  const LinearWeight& up;
  const LinearWeight& down;
  const TensorView* up_bias = nullptr;
  const TensorView* down_bias = nullptr;
};

// act(gate(x)) * up(x) projected down, over one expert's rows; gpt-oss's clamped SwiGLU
// where the model has one.
void gated_ffn(Backend& backend, const ExpertFfn& w, const LayerKinds& kinds, const TensorView& x, TensorView up,
               TensorView gated, TensorView out) {
  linear(backend, w.up, x, w.up_bias, up);
  if (kinds.swiglu_limit > 0.0f)
    backend.clamped_swiglu(up, kinds.swiglu_alpha, kinds.swiglu_limit, gated);
  else
    backend.gated_activation(up, kinds.activation, gated);
  linear(backend, w.down, gated, w.down_bias, out);
}

// Expert e's bias, or null when the experts have none.
const TensorView* bias_of(const std::vector<TensorView>& biases, int64_t e) {
  return biases.empty() ? nullptr : &biases[static_cast<size_t>(e)];
}

}  // namespace

MoeBuffers moe_buffers(const detail::SessionState& s, int64_t token_begin, int64_t tokens) {
  using detail::Buf;
  const ModelConfig& c = s.m().arch.config;
  const int64_t k = c.experts_per_token;
  MoeBuffers b;
  b.logits = s.buf(Buf::moe_logits).rows(token_begin, tokens);
  b.ids = matrix(s.buf(Buf::moe_ids).rows(token_begin * k, tokens * k), tokens, k);
  b.weights = matrix(s.buf(Buf::moe_weights).rows(token_begin * k, tokens * k), tokens, k);
  b.offsets = s.buf(Buf::moe_offsets);
  b.rows = s.buf(Buf::moe_rows).rows(token_begin * k, tokens * k);
  b.slot_of = s.buf(Buf::moe_slot_of).rows(token_begin * k, tokens * k);
  b.x = s.buf(Buf::moe_x).rows(token_begin * k, tokens * k);
  b.up = s.buf(Buf::moe_up);
  b.act = s.buf(Buf::moe_act);
  b.out = s.buf(Buf::moe_out).rows(token_begin * k, tokens * k);
  if (c.shared_expert_ffn_size > 0) {
    b.shared = s.buf(Buf::moe_shared).rows(token_begin, tokens);
    b.shared_gate = s.buf(Buf::moe_shared_gate).rows(token_begin, tokens);
  }
  return b;
}

void moe_block(Backend& backend, const MoeWeights& w, const Architecture& arch, const TensorView& normed,
               const MoeBuffers& b, TensorView proj, Communicator* tensor) {
  const ModelConfig& c = arch.config;
  const int64_t T = normed.dim(0), k = c.experts_per_token, E = c.num_experts;
  const int64_t Fe = w.expert_ffn, Fs = w.shared_ffn;  // this rank's columns
  if (T == 0) return;

  linear(backend, w.router, normed, w.router_bias.empty() ? nullptr : &w.router_bias, b.logits);
  backend.moe_route(b.logits, arch.kinds.normalize_top_k, b.ids, b.weights);
  backend.moe_group(b.ids, b.offsets, b.rows, b.slot_of);
  // The GEMM sizes: how many slots each expert got.
  std::vector<int32_t> offsets(static_cast<size_t>(E + 1));
  backend.copy(TensorView(offsets.data(), DType::i32, {E + 1}), b.offsets);
  backend.gather_rows(normed, b.rows, b.x);

  const TensorView up = matrix(b.up, T * k, 2 * Fe), act = matrix(b.act, T * k, Fe);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t begin = offsets[e], n = offsets[e + 1] - begin;
    if (n == 0) continue;  // no token chose this expert
    const ExpertFfn expert{w.expert_up[e], w.expert_down[e], bias_of(w.expert_up_bias, e),
                           bias_of(w.expert_down_bias, e)};
    gated_ffn(backend, expert, arch.kinds, b.x.rows(begin, n), up.rows(begin, n), act.rows(begin, n),
              b.out.rows(begin, n));
  }
  if (Fs == 0 || w.shared_up.empty()) {
    backend.moe_combine(b.out, b.slot_of, b.weights, nullptr, nullptr, proj);
  } else {
    // The shared expert sees every token, after the routed experts are done with the scratch.
    gated_ffn(backend, {w.shared_up, w.shared_down}, arch.kinds, normed, matrix(b.up, T, 2 * Fs),
              matrix(b.act, T, Fs), b.shared);
    backend.linear(normed, w.shared_gate, nullptr, b.shared_gate);
    backend.moe_combine(b.out, b.slot_of, b.weights, &b.shared, &b.shared_gate, proj);
  }
  // Under tensor parallelism each down output is this rank's partial sum over its columns,
  // and the combine is linear in them (the routing weights and the shared gate are the
  // same on every rank): one all-reduce completes the whole block, as the dense FFN's.
  if (tensor) tensor->all_reduce_sum(proj);
}

}  // namespace kestrel
