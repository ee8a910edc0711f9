// kernels/backend.h: the fused operations every compute device implements.
//
// One plain virtual interface; the CPU implementation (kernels/cpu) is the fp32 reference
// that every CUDA kernel (kernels/cuda) is tested against. Layers call these operations and
// never touch raw device memory themselves. All tensors passed to an operation live on the
// backend's device. Bad indices held in device memory (a token id outside the vocabulary,
// a block id outside the cache) are reported by a CUDA backend at the next synchronize()
// or copy to the host, as Error(internal). Shapes below use: T = tokens in this step (packed, no padding),
// B = sequences in this step, H = hidden size, nh / nkv = query / key-value heads,
// hd = head size, V = vocabulary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace kestrel {

// Device memory. Sessions and models take all they need up front through this.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const = 0;
  // Never returns null: throws Error(device or limit) naming `what` on failure.
  virtual void* allocate(size_t bytes, const char* what) = 0;
  virtual void deallocate(void* ptr) noexcept = 0;
};

enum class NormKind : uint8_t { layer_norm, rms_norm };
enum class Activation : uint8_t { gelu_tanh, gelu_erf, relu, silu };
// How rotary embeddings pair up the dimensions of a head: NeoX/Llama pairs (i, i + d/2),
// GPT-J pairs (2i, 2i + 1).
enum class RotaryStyle : uint8_t { none, neox, gptj };

struct NormParams {
  NormKind kind = NormKind::layer_norm;
  TensorView gamma;  // [H]
  TensorView beta;   // [H], empty for RMSNorm or a LayerNorm without bias
  float eps = 1e-5f;
};

struct RotaryParams {
  RotaryStyle style = RotaryStyle::none;
  int rotary_dim = 0;  // rot: leading dims of each head that rotate; 0 = head size
  // [rot / 2] f32 on the backend's device: pair j of a token at position p turns by the
  // angle float(p) * inv_freq[j] (an f32 product). A model computes it once, with its base
  // frequency and any rope scaling (linear, Llama 3) folded in.
  TensorView inv_freq;
  // Multiplies cos and sin (a rope attention factor, YaRN / LongRoPE) where only part of
  // each head rotates (Phi-4-mini): the rotated dims scale, the others do not. With every
  // dim rotating the factor is folded into the softmax scale instead and this stays 1.
  float cos_sin_scale = 1.0f;
};

struct AttentionParams {
  int n_heads = 0;     // nh
  int n_kv_heads = 0;  // nkv; nh % nkv == 0 (GQA/MQA when nkv < nh)
  int head_dim = 0;    // hd
  float scale = 0.0f;  // softmax scale, usually 1/sqrt(hd); must be set (> 0)
  RotaryParams rotary;
  // > 0: sliding-window attention, a token at position p attends to positions
  // max(0, p - sliding_window + 1) .. p only (Mistral); 0: to every earlier position.
  // The cache still holds every position.
  int sliding_window = 0;
  // > 0: attention logit soft-capping (Gemma 2): each score s = scale * q.k becomes
  // tanh(s / cap) * cap before the softmax; 0: off.
  float logit_softcap = 0.0f;
  // [nh] in the activation dtype, or empty: attention sinks (gpt-oss), one learned logit per
  // query head that joins each softmax's denominator, exp(sink - max) beside the scores'
  // exp(s_j - max), with no value row; the weights then sum to less than 1.
  TensorView sinks;
};

// One layer's slice of the paged KV cache. Block b of the pool holds the keys of
// `block_size` consecutive positions of one sequence for every KV head:
// k, v: [num_blocks, nkv, block_size, hd]: f32 or f16 on the CPU (SessionOptions::kv_dtype;
// f16 rounded to nearest even when written, widened exactly when read), the activation dtype
// on CUDA.
struct KvCacheLayer {
  TensorView k;
  TensorView v;
  int block_size = 0;
};

// How a quantized linear weight stores its values (see QuantizedWeight).
enum class QuantFormat : uint8_t {
  int8,  // symmetric:  w = scale * q, q in [-127, 127]
  int4,  // asymmetric: w = scale * q + min, q in [0, 15]
  q4_k,  // ggml's K-quant super-blocks, kept as a GGUF file stores them (kquant_blocks.h)
  q5_k,
  q6_k,
  q4_0,    // ggml's blocks of 32 columns, kept as stored (kquant_blocks.h)
  q5_0,
  q5_1,
  iq4_nl,
  iq4_xs,  // and of 256 columns
  q2_k,
  q3_k,
  mxfp4,     // OCP MX FP4 (E2M1) in ggml's blocks of 32 with an E8M0 scale (gpt-oss's experts)
  fp8_e4m3,  // OCP FP8 E4M3 (core/fp8.h): w = scale * e4m3(q), one scale per row
  mixed,     // consecutive row ranges, each in its own format (QuantizedWeight::parts)
};
const char* to_string(QuantFormat format) noexcept;

// A linear weight w: [M, K] (rows are output features) kept quantized on the device. Each
// row's K columns are split into G = ceil(K / group_size) groups of group_size consecutive
// columns (the last may be short), each with its own scale (and min); one group per row
// (group_size = K) is per-output-channel quantization.
//   int8: data [M, K] i8; scales [M, G] f32; mins empty.
//   int4: data [M, G * group_size / 2] i8 used as bytes; group_size is a multiple of 32.
//         Each run of 32 columns of a group (a short last group is padded with zeros)
//         takes 16 bytes, byte j holding column j in its low nibble and column j + 16 in
//         its high nibble (ggml's Q4_0 / Q4_1 order, so those blocks are copied as they
//         are); scales, mins: [M, G] f16.
//   fp8_e4m3: data [M, K] i8 holding E4M3 bytes; scales [M, 1] f32 (group_size = K); the
//         activations are rounded to E4M3 per token (scale max |x_t| / 448) before the
//         product, as an FP8 GEMM takes them.
//   ggml block formats (q4_k ... q3_k, kquant::is_block_format): group_size the format's
//         block columns (kquant::block_columns: 32 for q4_0 / q5_0 / q5_1 / iq4_nl / mxfp4, 256 for the
//         others; K a multiple of it); data [M, G * bytes] i8 used as bytes, G blocks per row
//         of kquant::block_bytes each in ggml's layout, their scales inside them
//         (kernels/kquant_blocks.h); scales, mins empty.
//   mixed: a fused weight (QKV, [gate | up]) whose parts a GGUF file stores in different
//         formats (llama.cpp's Q4_K_M keeps some layers' V rows in Q6_K beside Q4_K Q and K
//         rows). `parts` hold consecutive row ranges in order, each a weight of one of the
//         formats above with the same cols (their rows summing to M); data, scales, mins
//         empty, group_size 0. A product is each part's own product written into its columns
//         of out, so every output row is bit for bit what its part alone gives, on every
//         path; the flags below apply to every part.
// A backend may lay a weight out for its own kernels once it is loaded
// (Backend::prepare_quantized); the CPU interleaves int4 and int8 rows (`interleave` below).
struct QuantizedWeight {
  QuantFormat format = QuantFormat::int8;
  int64_t rows = 0;  // M
  int64_t cols = 0;  // K
  int group_size = 0;
  TensorView data, scales, mins;
  // Keep the activations precise: the CPU's decode kernels otherwise quantize them to 8
  // bits per block of 32 (as llama.cpp does); with this set they use 16 bits (int8
  // weights) or f32 (int4). Set for the LM head, whose logits pick the tokens: on SmolLM2
  // the 8-bit error alone flips the first answer token (top two logits 0.08 apart).
  bool precise_activations = false;
  // W8A8 (int8 weights, one group per row): the activations are quantized too, per token to
  // int8 (scale = max |x_t| / 127), and prefill is an int8 x int8 -> int32 GEMM scaled by
  // weight scale x token scale. Decode steps keep the int8 weights' dot products (on the
  // CPU with activation blocks of 32: finer than one scale per token).
  bool int8_activations = false;
  std::vector<QuantizedWeight> parts;  // mixed only
  // The CPU's int4 / int8 decode layout (kernels/cpu/interleaved_rows.h), set by its
  // prepare_quantized: 0, the layouts above, or 8: rows taken 8 at a time, each 32-column
  // block of the 8 rows ordered so that one 32-bit lane holds a few columns of one row (an
  // integer dot product against a few broadcast activations advances the 8 rows at once),
  // and their scales (and mins) as 8 consecutive values per group. Same tensor shapes and
  // bytes; every CPU path reads both layouts; other backends refuse 8.
  int interleave = 0;
  int64_t groups() const { return group_size > 0 ? (cols + group_size - 1) / group_size : 0; }
  // Whether this holds a weight at all (a mixed weight has parts instead of data).
  bool empty() const { return data.empty() && parts.empty(); }
  // Part i of a mixed weight, carrying this weight's flags (precise / int8 activations).
  QuantizedWeight part(size_t i) const {
    QuantizedWeight p = parts[i];
    p.precise_activations = precise_activations;
    p.int8_activations = int8_activations;
    return p;
  }
};

// The sequences of one step. Sequence i owns rows [token_offsets[i], token_offsets[i+1])
// of the step's activations, and its cache already holds n_past[i] positions, so its new
// tokens sit at positions n_past[i] ... n_past[i] + n_new - 1. Logical position p of
// sequence i lives in block block_tables[i * max_blocks_per_seq + p / block_size], slot
// p % block_size. All three arrays are int32 on the backend's device.
struct SequenceBatch {
  int n_seqs = 0;
  int max_blocks_per_seq = 0;
  int max_new_tokens = 0;   // max over sequences of new tokens this step (host copy)
  int max_total_tokens = 0; // max over sequences of n_past + n_new (host copy)
  TensorView token_offsets;  // [B + 1] i32
  TensorView n_past;         // [B] i32
  TensorView block_tables;   // [B, max_blocks_per_seq] i32
};

// Per-sequence sampling settings, laid out flat so a device kernel can read them.
struct SamplingRow {
  float temperature = 0.0f;         // <= 0: greedy (argmax, lowest id on ties)
  int32_t top_k = 0;                // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off; keep tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;  // HF style over prompt + generated tokens; 1: off
  float presence_penalty = 0.0f;    // OpenAI style over generated tokens; 0: off
  float frequency_penalty = 0.0f;   // OpenAI style over generated tokens; 0: off
  uint32_t reserved = 0;            // explicit padding: host and device layouts must agree
  uint64_t seed = 0;                // with `step`, fixes the random draw
  uint64_t step = 0;                // index of the token being sampled in its sequence
};
static_assert(sizeof(SamplingRow) == 48, "SamplingRow is read as raw bytes by device kernels");

// Inputs of one sampling call for B sequences. `history` holds each sequence's prompt
// followed by the tokens generated so far: row i is history[i, 0 : history_lengths[i]],
// the first prompt_lengths[i] of which are the prompt.
struct SamplingBatch {
  int n_seqs = 0;
  TensorView rows;             // [B * sizeof(SamplingRow)] i8 bytes of SamplingRow
  TensorView history;          // [B, max_history] i32
  TensorView history_lengths;  // [B] i32
  TensorView prompt_lengths;   // [B] i32
};

// A draw in [0, 1) that depends only on (seed, step): the same seed gives the same
// tokens whatever else is in the batch, on every device.
double sampling_uniform(uint64_t seed, uint64_t step);

class Backend {
 public:
  virtual ~Backend() = default;
  // Lays a loaded weight out for this backend's kernels, in place, once its flags are set
  // and before its first use (the CPU interleaves int4 / int8 rows); by default nothing changes.
  virtual void prepare_quantized(QuantizedWeight& w) { (void)w; }
  virtual Device device() const = 0;
  virtual Allocator& allocator() = 0;
  // Activation / KV-cache dtype this backend computes in (f32 on the CPU).
  virtual DType compute_dtype() const = 0;

  // --- data movement ---------------------------------------------------------------
  // dst = src; either side may be on the host or this backend's device; same bytes.
  virtual void copy(TensorView dst, const TensorView& src) = 0;
  // Waits for all queued work (a no-op on the CPU).
  virtual void synchronize() = 0;

  // --- operations ------------------------------------------------------------------
  // out[t, :] = wte[ids[t], :] + (wpe ? wpe[positions[t], :] : 0)
  //   ids, positions: [T] i32; wte: [V, H]; wpe: [P, H] or null; out: [T, H]
  virtual void embedding(const TensorView& ids, const TensorView& positions,
                         const TensorView& wte, const TensorView* wpe, TensorView out) = 0;
  // The same from a quantized table (a tied LM head kept as the file's blocks), its rows
  // dequantized on the way: out[t, :] = dequantize(wte)[ids[t], :] (+ wpe[positions[t], :]).
  //   wte: [V, H] quantized; out: [T, H] in the activation dtype; wpe in that dtype
  virtual void embedding(const TensorView& ids, const TensorView& positions,
                         const QuantizedWeight& wte, const TensorView* wpe, TensorView out) = 0;

  // residual += delta + delta_bias (each term optional), then out = norm(residual).
  //   residual: [T, H] in/out; delta: [T, H] or null; delta_bias: [H] or null; out: [T, H]
  // Without delta and delta_bias, out may be residual itself: a norm in place (Gemma's
  // post-attention and post-FFN norms of a block's output).
  virtual void add_residual_norm(TensorView residual, const TensorView* delta,
                                 const TensorView* delta_bias, const NormParams& norm,
                                 TensorView out) = 0;

  // out = x @ w^T + bias.   x: [T, K]; w: [M, K] (rows are output features); bias: [M] or
  // null; out: [T, M] in the activation dtype, or f32 (the LM head writes f32 logits)
  virtual void linear(const TensorView& x, const TensorView& w, const TensorView* bias,
                      TensorView out) = 0;

  // out = x @ dequantize(w)^T + bias, the weight dequantized on the fly (never stored as
  // floats).   x: [T, K]; w: [M, K] quantized; bias: [M] or null; out: [T, M] in the
  // activation dtype, or f32
  virtual void quantized_linear(const TensorView& x, const QuantizedWeight& w,
                                const TensorView* bias, TensorView out) = 0;

  // x = act(x + bias) in place.   x: [T, M]; bias: [M] or null
  virtual void bias_activation(TensorView x, const TensorView* bias, Activation act) = 0;

  // out = act(gate) * up, where gate_up = [gate | up] along the last dim (SwiGLU with silu).
  //   gate_up: [T, 2F]; out: [T, F]
  virtual void gated_activation(const TensorView& gate_up, Activation act, TensorView out) = 0;

  // gpt-oss's clamped SwiGLU: with g = min(gate, limit) and u = clamp(up, -limit, limit),
  // out = (u + 1) * g * sigmoid(alpha * g).   gate_up: [T, 2F] as [gate | up]; out: [T, F];
  // limit > 0
  virtual void clamped_swiglu(const TensorView& gate_up, float alpha, float limit, TensorView out) = 0;

  // Context phase: causal attention of each sequence's new tokens over its cached and new
  // positions (the last params.sliding_window of them when set). Adds qkv_bias, applies
  // rotary at each token's position, writes the new K/V into the cache, then computes
  // softmax(scale * q k^T) v.
  //   qkv: [T, (nh + 2 nkv) * hd] as [q heads | k heads | v heads]; scratch: its contents
  //   afterwards are unspecified
  //   qkv_bias: [(nh + 2 nkv) * hd] or null; out: [T, nh * hd]
  virtual void context_attention(TensorView qkv, const TensorView* qkv_bias,
                                 const AttentionParams& params, const SequenceBatch& batch,
                                 const KvCacheLayer& cache, TensorView out) = 0;

  // Generation phase: exactly one new token per sequence (T == B); otherwise as above.
  // The CUDA backend needs head_dim to be a multiple of 8, at most 256.
  virtual void masked_attention(TensorView qkv, const TensorView* qkv_bias,
                                const AttentionParams& params, const SequenceBatch& batch,
                                const KvCacheLayer& cache, TensorView out) = 0;

  // Per-head RMSNorm of the query and key heads of a fused QKV row, in place (Qwen3, Gemma 3:
  // applied before rotary, so before the attention call): each q head h of row t becomes
  // rms_norm(q_h) * q_norm.gamma, each k head likewise with k_norm; v heads are untouched.
  //   qkv: [T, (nh + 2 nkv) hd] as above; q_norm.gamma, k_norm.gamma: [hd] (rms_norm kind).
  // OLMo 2 norms all q heads of a row as one vector, and all k heads as another: then
  // q_norm.gamma is [nh hd] and k_norm.gamma [nkv hd] (each norm's width is its gamma's).
  virtual void head_norm(TensorView qkv, int n_heads, int n_kv_heads, int head_dim,
                         const NormParams& q_norm, const NormParams& k_norm) = 0;

  // x *= factor, in place (Gemma's embedding scale).   x: [T, H] in the activation dtype
  virtual void scale(TensorView x, float factor) = 0;

  // x = tanh(x / cap) * cap, in place (Gemma 2's final logit soft-capping); cap > 0.
  //   x: [R, V] f32 or the activation dtype
  virtual void soft_cap(TensorView x, float cap) = 0;

  // out[b, :] = x[rows[b], :].   x: [T, H]; rows: [B] i32; out: [B, H]
  virtual void gather_rows(const TensorView& x, const TensorView& rows, TensorView out) = 0;

  // --- mixture of experts (layers/moe.h runs the block; E experts, k chosen per token) ---
  // Routing: p = softmax(router_logits[t, :]) in f32; ids[t, 0..k) are the experts of the k
  // largest p in descending order (equal p: the lower expert first, as torch.topk) and
  // weights[t, j] their p, divided by the sum of the k when `normalize`.
  //   router_logits: [T, E] activation dtype; ids: [T, k] i32; weights: [T, k] f32
  virtual void moe_route(const TensorView& router_logits, bool normalize, TensorView ids, TensorView weights) = 0;
  // Groups the T * k (token, choice) pairs by expert, in token order within each expert:
  // the pairs of expert e take slots offsets[e] .. offsets[e + 1) (offsets[E] = T * k),
  // rows[s] is the token of slot s and slot_of[t * k + j] the slot of pair (t, j).
  //   ids: [T, k] i32 (each in [0, E)); offsets: [E + 1] i32; rows, slot_of: [T * k] i32
  virtual void moe_group(const TensorView& ids, TensorView offsets, TensorView rows, TensorView slot_of) = 0;
  // out[t, :] = sum over j = 0..k-1 of weights[t, j] * expert_out[slot_of[t * k + j], :],
  // plus sigmoid(shared_gate[t, 0]) * shared[t, :] when `shared` is given.
  //   expert_out: [T * k, H]; slot_of: [T * k] i32; weights: [T, k] f32; shared: [T, H] or
  //   null; shared_gate: [T, 1] (with shared); out: [T, H]
  virtual void moe_combine(const TensorView& expert_out, const TensorView& slot_of, const TensorView& weights,
                           const TensorView* shared, const TensorView* shared_gate, TensorView out) = 0;

  // Copy-on-write of shared KV blocks (beams and parallel samples that share a prompt):
  // for every pair i, block pairs[i, 1] of k and of v becomes a copy of block pairs[i, 0]
  // (all KV heads and slots). No destination is also a source or another pair's destination.
  //   cache: one layer, k, v: [num_blocks, nkv, block_size, hd]; pairs: [n, 2] i32
  virtual void copy_kv_blocks(const KvCacheLayer& cache, const TensorView& pairs) = 0;

  // Applies penalties and temperature to logits (in place) and picks one token per row.
  // Order: repetition penalty, presence/frequency penalties, then greedy argmax if
  // temperature <= 0; else temperature, softmax, top-k, top-p over the top-k set
  // renormalized, min-p, and an inverse-CDF draw in descending-probability order with
  // u = sampling_uniform(seed, step). kernels/cpu/sampling_cpu.cc is the reference.
  //   logits: [B, V] f32; tokens: [B] i32
  virtual void sample(TensorView logits, const SamplingBatch& batch, TensorView tokens) = 0;
};

// The CPU reference backend (always built). `batch_invariant`: see ModelOptions.
std::unique_ptr<Backend> make_cpu_backend(int num_threads = 0, bool batch_invariant = false);
// The CUDA backend; throws Error(unsupported) when this build has no CUDA or no GPU is present.
std::unique_ptr<Backend> make_cuda_backend(int device_index);
bool cuda_backend_available() noexcept;

}  // namespace kestrel
