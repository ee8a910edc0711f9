// tools/sizing.h: the inference sizing calculator behind kestrel-size (and the byte and
// FLOP counts kestrel-bench reports). From a model's shape and the session limits it
// computes, per GPU, the bytes of weights, KV cache and activations that Kestrel would
// allocate, whether they fit a memory, the most concurrent sequences that fit, and a
// roofline estimate of step latency.
//
// The KV cache and activation sizes are exactly what Session::memory() reports (the same
// detail::session_layout that Session uses). A model file or directory's weights are exactly
// what Model::weight_bytes() reports (below). A preset's or a shape's from flags are
// computed analytically, per rank (for tp = pp = 1 exactly what a model of that shape with
// float weights holds, in every quantization mode):
//   - per-layer matrices split over tp: qkv by heads (KV heads replicated when tp exceeds
//     them), out by input heads, up by FFN rows, down by FFN columns; a sparse layer's
//     experts (and shared expert) each by their own columns the same way, the router and
//     the shared expert's gate replicated;
//   - norms and biases replicated; token and position embeddings replicated;
//   - LM head split by vocabulary over tp (ceil(V / tp) rows, rounded up to a multiple of 8
//     as make_shard splits it); a tied LM head on the stage
//     that holds the embedding reuses it (no extra bytes; at tp > 1 the table then holds
//     the last rank's padding rows too), elsewhere it is a copy;
//   - layers split contiguously over pp (the first stages take one more when pp does not
//     divide them); the first stage also holds the embeddings, the last the final norm and
//     LM head; the largest stage is the one reported;
//   - activations per rank: the session layout with heads / tp and the rank's FFN columns
//     of the dense FFN, of each expert and of the shared expert (the MoE scratch), logits
//     kept at the full vocabulary, as after the LM head's all-gather;
//   - the FFN split as Model::load splits it (make_shard's ffn_align): a file's in whole
//     blocks of its down projection as kept (FileWeights::ffn_alignment), the first ranks
//     one block more where they do not divide evenly; a shape's by columns (float weights);
//   - quantization as the loader quantizes a float checkpoint (QuantizationSpec): the
//     linear weights (qkv, out, up, down, router and experts) in the layout of backend.h's
//     QuantizedWeight: int8 = 1 byte per weight + one f32 scale per row and group (per row
//     by default); int4 = 1/2 byte per weight (groups padded to group_size, 32 by default)
//     + f16 scale and f16 min per row and group; w8a8 / fp8 1 byte per weight + an f32
//     scale per row. The LM head in int8 per row for int4 / w8a8 / fp8 (for_lm_head), a
//     tied one then a copy beside the embedding. Embeddings and norms stay in `dtype`.
//     Quantization::automatic is none for these shapes (float weights stay float).
// A GGUF file or model directory is sized from its tensor table instead (ModelShape::file,
// tools/held_weights.h): each tensor's stored type and shape through the loader's own keep /
// materialize / quantize rules, so its weight bytes are exactly the loaded model's, per rank
// and stage, in every quantization mode; WeightBytes::formats breaks them down by held
// format. (Not a checkpoint of stored int8 / FP8 weights: those are sized analytically.)
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kestrel/model.h"
#include "kestrel/session.h"
#include "kestrel/types.h"

namespace kestrel {
struct Architecture;
}

namespace kestrel::sizing {

class FileWeights;

// What sizing needs of a model beyond ModelConfig: which optional weights it has.
struct ModelShape {
  ModelConfig config;
  bool gated_ffn = false;          // up projection is [gate | up], 2F rows
  bool learned_positions = false;  // a [max_positions, H] position embedding
  bool norm_bias = false;          // LayerNorm beta in every norm
  bool qkv_bias = false;           // biases of the q, k, v projections
  bool out_bias = false;           // bias of the attention output projection
  bool mlp_bias = false;           // biases of up and down (feed-forward)
  bool lm_head_bias = false;       // a [V] bias of the LM head (GPT-J)
  bool shared_norm = false;        // one norm per layer feeds attention and FFN (GPT-J)
  int rotary_pairs = 0;            // entries of the rotary inverse-frequency table (rot / 2)
  bool post_norms = false;         // norms after attention and the FFN too (Gemma 2 / 3)
  bool qk_norm = false;            // [hd] norms of each query and key head (Qwen3, Gemma 3)
  bool qk_norm_over_heads = false; // those norms over the whole q / k ([nh hd], [nkv hd]: OLMo 2)
  bool pre_norms = true;           // false: no norms before the blocks (OLMo 2)
  bool attention_sinks = false;    // an [nh] sink logit per query head (gpt-oss)
  bool moe_biases = false;         // biases of the router [E] and of each expert ([2 Fe], [H]) (gpt-oss)
  // Per-layer rotary tables (Gemma 2 / 3: local and global layers), entries of each; empty
  // when every layer reads the one table above.
  std::vector<int> layer_rotary_pairs;
  // Mixture of experts (config.num_experts > 0): which layers are sparse. A sparse layer
  // holds a router [E, H], E experts ([2 Fe, H] up, [H, Fe] down) and, when
  // config.shared_expert_ffn_size > 0, a shared expert and its [1, H] gate, instead of the
  // dense up / down; its FLOPs count the k experts a token uses.
  std::vector<bool> sparse_layers;
  std::string source;              // the file, directory or preset it came from
  // A GGUF file's or model directory's tensor table, from which the weights are sized as
  // stored; null for presets, shapes from flags (and once the dimensions are overridden)
  // and checkpoints of stored quantized weights.
  std::shared_ptr<const FileWeights> file;
};

// The shape of a loaded architecture (exact: read from its weight recipe).
ModelShape shape_of(const Architecture& arch);
// Reads config.json (and safetensors headers) of a model directory, or a GGUF file's
// metadata; no weights are read or converted. Errors as Model::load.
ModelShape read_model_shape(const std::filesystem::path& path);
// Named shapes: gpt2, gpt2-xl, gpt3-1.3b, gpt3-175b, llama2-7b, llama2-70b, llama3-8b,
// tinyllama-1.1b, smollm2-135m. Throws Error(invalid_argument) listing them.
ModelShape preset_shape(const std::string& name);
std::vector<std::string> preset_names();

struct SizingOptions {
  DType dtype = DType::f16;  // weights (unquantized parts) and activations
  // The device a run is sized for: its KV cache dtype defaults to session.kv_dtype as a
  // Session resolves it there (f16 on the CPU, `dtype` on CUDA); the CPU runs dtype f32.
  DeviceKind device = DeviceKind::cuda;
  // As ModelOptions.quantization: automatic keeps a GGUF file's blocks as stored (and is
  // none for presets and shapes); w8a8, fp8: 1 byte per weight + a scale per channel.
  Quantization quantization = Quantization::automatic;
  int group_size = 0;        // as ModelOptions.quant_group_size: 0 for int8 per output channel
                             // (one group per row), int4 32; else a multiple of 32
  int tp = 1;                // tensor-parallel ranks
  int pp = 1;                // pipeline stages
  SessionOptions session;    // per-rank session limits, as Session takes them
  size_t memory_bytes = 0;   // per GPU; 0: no fit check
  double bandwidth = 0.0;    // bytes/s of one GPU, for the roofline; 0: none
  double flop_rate = 0.0;    // FLOP/s of one GPU
};

// Weight bytes of one rank, by part.
struct WeightBytes {
  size_t token_embedding = 0;
  size_t position_embedding = 0;
  size_t layers = 0;      // all layers of the stage
  size_t final_norm = 0;
  size_t lm_head = 0;     // 0 when tied to an embedding held by the same rank
  size_t rotary_table = 0;  // the rotary inverse frequencies (f32), on every rank
  size_t lm_head_view = 0;  // a tied LM head: the bytes of it read from the token embedding
                            // (this rank's vocabulary slice); not held twice, not in total()
  // Sized from a file (ModelShape::file): the same total by the format each weight is held
  // in, e.g. {"q4_k": ..., "q6_k": ..., "f32": ...} (tools/held_weights.h); empty otherwise.
  std::map<std::string, size_t> formats;
  size_t total() const {
    return token_embedding + position_embedding + layers + final_norm + lm_head + rotary_table;
  }
  // Bytes a step reads from the weights: everything but the embedding tables, of which it
  // gathers only a few rows (a tied LM head reads its slice of the token embedding).
  size_t streamed_per_step() const { return layers + final_norm + lm_head + lm_head_view; }
};

// One pipeline stage: its tensor rank holding the most weights (analytically every rank
// holds the same but for an uneven FFN split, where rank 0 holds the most; a file's ranks
// can differ where some slices cut blocks and others not), and that rank's KV cache and
// activations.
struct StageSizing {
  int stage = 0;
  int tp_rank = 0;
  int first_layer = 0, num_layers = 0;
  int ffn = 0, expert_ffn = 0, shared_expert_ffn = 0;  // FFN columns this rank holds (of each expert)
  bool lm_head_tied_here = false;  // the LM head reads this rank's token embedding
  WeightBytes weights;
  size_t kv_cache_bytes = 0;
  size_t activation_bytes = 0;
  size_t total() const { return weights.total() + kv_cache_bytes + activation_bytes; }
};

// FLOPs and bytes of one step on one rank of a stage.
struct StepCost {
  double flops = 0.0;
  double bytes = 0.0;
  double seconds(double bandwidth, double flop_rate) const;  // roofline: max of the two
};

struct Sizing {
  ModelShape shape;
  SizingOptions options;
  SessionOptions session;           // resolved (zeros replaced)
  size_t parameters = 0;            // whole model, counted once
  size_t kv_bytes_per_token = 0;    // per rank of the largest stage
  std::vector<StageSizing> stages;
  size_t largest_stage = 0;         // index into stages
  bool fits = true;                 // largest stage total <= memory_bytes (when given)
  int max_sequences_that_fit = 0;   // with each sequence at max_sequence_tokens; 0 if none / not checked
  // Roofline (when bandwidth and flop_rate are given), summed over the pipeline stages:
  // one generation step of max_sequences sequences, each max_sequence_tokens long; and one
  // context-phase step of max_step_tokens prompt tokens (max_sequences prompts).
  double decode_step_seconds = 0.0;
  double context_step_seconds = 0.0;
  const StageSizing& largest() const { return stages.at(largest_stage); }
};

// Throws Error(invalid_argument) naming the option at fault (tp not dividing the heads,
// more tp ranks than FFN blocks, pp above the layer count, session limits out of range).
Sizing compute(const ModelShape& shape, const SizingOptions& options);

// Cost of one generation step of `batch` sequences whose caches hold `context` positions,
// on one rank of stage `stage` (weights streamed once, KV read for every sequence).
StepCost decode_step_cost(const ModelShape& shape, const SizingOptions& options, const StageSizing& stage,
                          int batch, double context);
// Cost of one context-phase step: `batch` prompts of `prompt_tokens` tokens each, causal.
StepCost context_step_cost(const ModelShape& shape, const SizingOptions& options, const StageSizing& stage,
                           int batch, int prompt_tokens);

// "1.50 GiB", "812.0 MiB", "96 B".
std::string format_bytes(double bytes);
// Parses "80GiB", "80 GB", "1.5T", "4096" (bytes); binary and decimal suffixes; throws
// Error(invalid_argument) naming `what`.
double parse_bytes(const std::string& text, const std::string& what);
// Parses "3.35T", "989e12", "2TB/s": a rate with an optional SI suffix (k, M, G, T, P)
// and an optional unit suffix (B/s, FLOP/s, FLOPS); throws naming `what`.
double parse_rate(const std::string& text, const std::string& what);

}  // namespace kestrel::sizing
