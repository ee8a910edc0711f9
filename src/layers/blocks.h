// layers/blocks.h: the attention and feed-forward blocks shared by every architecture.
// One block object is not needed: the blocks are stateless functions over the layer's
// weights and the session's reusable buffers.
#pragma once

#include "backend.h"
#include "models/architecture.h"
#include "models/weights.h"
#include "parallel/communicator.h"
#include "parallel/communicator.h"

namespace kestrel {

// out = x @ w^T + bias through backend.linear or backend.quantized_linear, as w is stored.
//   x: [T, K]; w: [M, K]; bias: [M] or null; out: [T, M]
void linear(Backend& backend, const LinearWeight& w, const TensorView& x, const TensorView* bias,
            TensorView out);

// Both blocks are tensor-parallel aware (Megatron): with `tensor` set, a rank holds some
// heads (column-parallel QKV, row-parallel output projection) or some FFN columns
// (column-parallel up, row-parallel down), so its proj is a partial sum, completed by one
// all-reduce over the tensor group at the end of each block. Widths below are the rank's.

// proj = out_proj(attention(qkv_proj(normed)))  (the output bias is left for the next
// residual add, which fuses it).
//   normed: [T, H]; qkv: [T, (nh + 2 nkv) hd] scratch; attn: [T, nh hd] scratch; proj: [T, H]
void attention_block(Backend& backend, const LayerWeights& w, const AttentionParams& params,
                     const SequenceBatch& batch, const KvCacheLayer& cache, bool generation,
                     const TensorView& normed, TensorView qkv, TensorView attn, TensorView proj,
                     Communicator* tensor);

// proj = down(act(up(normed))) or down(act(gate(normed)) * up(normed)) for a gated FFN
// (down bias left for the next residual add).
//   normed: [T, H]; ffn: [T, F or 2F] scratch; ffn_act: [T, F] scratch (gated); proj: [T, H]
void feed_forward_block(Backend& backend, const LayerWeights& w, const LayerKinds& kinds,
                        const TensorView& normed, TensorView ffn, TensorView ffn_act, TensorView proj,
                        Communicator* tensor);
// The same in two halves, for a parallel residual that reuses `normed` in between: the
// up half leaves act(up(normed)) (or the gated product) in ffn (ffn_act when gated), the
// down half projects it into proj.
void feed_forward_up(Backend& backend, const LayerWeights& w, const LayerKinds& kinds, const TensorView& normed,
                     TensorView ffn, TensorView ffn_act);
void feed_forward_down(Backend& backend, const LayerWeights& w, const LayerKinds& kinds, TensorView ffn,
                       TensorView ffn_act, TensorView proj, Communicator* tensor);

}  // namespace kestrel
