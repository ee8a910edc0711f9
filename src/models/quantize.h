// models/quantize.h: weight-only quantization of linear weights, done once at load.
//
// A float weight is first materialized in its canonical [out, in] layout by WeightStore
// (whatever the file held), then quantized here on the host and stored in the layout of
// QuantizedWeight (kernels/backend.h). GGUF tensors already in a matching block format are
// instead kept as stored (keep_ggml_blocks).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backend.h"
#include "kestrel/model.h"
#include "loaders/weight_source.h"
#include "models/architecture.h"
#include "parallel/shard.h"

namespace kestrel {

class WeightStore;

// The quantization of a model's linear weights, from ModelOptions.
struct QuantizationSpec {
  Quantization mode = Quantization::none;
  int group_size = 0;  // as in ModelOptions.quant_group_size (0: the mode's default)

  // int8 / int4 / w8a8: float weights are quantized at load.
  bool requantizes() const {
    return mode == Quantization::int8 || mode == Quantization::int4 || mode == Quantization::w8a8 ||
           mode == Quantization::fp8;
  }
  // Every mode but none and w8a8 (whose weights are int8 per channel) keeps a GGUF file's
  // matching blocks as stored.
  bool keeps_blocks() const {
    return mode != Quantization::none && mode != Quantization::w8a8 && mode != Quantization::fp8;
  }
  // The LM head's: int4 models keep it in int8 per channel (it is the most sensitive
  // weight: SmolLM2's perplexity loses several percent with a 4-bit LM head), as
  // llama.cpp's 4-bit formats keep their output tensor at 6 or 8 bits.
  // w8a8 models keep it weight-only in int8 (SmoothQuant leaves the head out too).
  QuantizationSpec for_lm_head() const {
    return mode == Quantization::int4 || mode == Quantization::w8a8 || mode == Quantization::fp8
               ? QuantizationSpec{Quantization::int8, 0}
               : *this;
  }
  // The token embedding table's: a GGUF file's blocks of every kept_layout format stay as
  // stored in every mode but none (which asks for dense weights), whatever the mode does to
  // linear weights: the lookup dequantizes the rows it reads to the very values a dense
  // table holds, so keeping them loses nothing and never quantizes further than the file did.
  QuantizationSpec for_embedding() const {
    return {mode == Quantization::none ? Quantization::none : Quantization::automatic, 0};
  }
  // Groups of the quantized weights for `cols` input columns: int8 per channel (cols) or
  // group_size; int4 group_size or 32.
  int group_for(int64_t cols) const;
  // The format a weight quantized at load takes: int4, fp8_e4m3, else int8 (int8, w8a8).
  QuantFormat requantized_format() const;
};

// Checks ModelOptions.quantization / quant_group_size; errors name the field.
QuantizationSpec quantization_spec(const ModelOptions& options);
// The spec the weights are loaded with: quantization_spec(options), automatic resolved to
// what the checkpoint stores (Model::load; kestrel-size sizes with the same).
QuantizationSpec loader_spec(const ModelOptions& options, const Architecture& arch);

// A quantized weight in host memory, in QuantizedWeight's layout.
struct HostQuantizedWeight {
  QuantFormat format = QuantFormat::int8;
  int64_t rows = 0, cols = 0;
  int group_size = 0;
  std::vector<int8_t> data;
  std::vector<float> scales;              // int8: [rows, groups]; ggml blocks: none (in data)
  std::vector<uint16_t> scales16, mins16; // int4: [rows, groups] f16 bits

  int64_t groups() const { return (cols + group_size - 1) / group_size; }
  // A view of this object's buffers as a host (CPU backend) QuantizedWeight.
  QuantizedWeight view();
};

// w: [rows, cols] f32, row-major. int8: scale = max |w| / 127 over the group,
// q = round(w / scale). int4: scale = (max - min) / 15, min stored as is (both rounded to
// f16 first), q = round((w - min) / scale). Throws Error(unsupported) naming `what` when
// a value is not finite or an int4 scale or min overflows f16.
HostQuantizedWeight quantize_int8(const float* w, int64_t rows, int64_t cols, int group_size,
                                  const std::string& what = "weight");
HostQuantizedWeight quantize_int4(const float* w, int64_t rows, int64_t cols, int group_size,
                                  const std::string& what = "weight");
// FP8 E4M3 per output channel: scale = max |w| / 448, q = e4m3(w / scale) (core/fp8.h).
HostQuantizedWeight quantize_fp8(const float* w, int64_t rows, int64_t cols, const std::string& what = "weight");

// The layout that holds a ggml block format exactly, if any: Q8_0 as int8 in groups of 32,
// Q4_1 as int4 in groups of 32, every other block format (Q4_0, Q5_0, Q5_1, IQ4_NL, IQ4_XS
// and the K-quants) as itself, its blocks copied as stored (kernels/kquant_blocks.h). Under
// Quantization::int4 Q4_0 is held as int4 too (its d * (q - 8) as scale d, min -8 d: the
// same values), as that mode asks.
struct KeptLayout {
  QuantFormat format;
  int group_size;
  bool operator==(const KeptLayout&) const = default;
};
std::optional<KeptLayout> kept_layout(GgmlType type, Quantization mode = Quantization::automatic);

// Bytes of a [rows, cols] weight of `format` in groups of `group_size` as QuantizedWeight
// lays it out (kernels/backend.h; HostQuantizedWeight::view): data, scales and mins. Not
// for mixed weights (sum their parts).
size_t quantized_weight_bytes(QuantFormat format, int64_t rows, int64_t cols, int group_size);

// Appends `rows` rows of `cols` columns of ggml blocks, exactly, in kept_layout(type, mode)'s
// layout. `out` must be empty or hold the same format, cols and group size.
void append_ggml_rows(HostQuantizedWeight& out, GgmlType type, const void* blocks, int64_t rows, int64_t cols,
                      Quantization mode = Quantization::automatic);

// Quantizes `dense` ([M, K], materialized by `store` on its backend's device in the runtime
// dtype) as `spec` asks and stores the result in `store`.
QuantizedWeight quantize_weight(WeightStore& store, Backend& backend, const TensorView& dense,
                                const QuantizationSpec& spec, const std::string& what);

// Which rows and columns of which source tensors keep_ggml_blocks copies, decided from the
// tensors' block types and shapes alone (no tensor data is read): kestrel-size sizes a
// file's weights from it (tools/held_weights.h). Each piece is rows [row, row + count) of
// `source`, columns [col_begin, col_end), in the canonical weight's row order, held in
// `layout` (kept_layout of its block type under the spec's mode); consecutive pieces of one
// layout become one weight, pieces of different layouts a mixed weight; then `pad_rows`
// zero rows (a slice's padding rows: the last ranks' LM-head rows past the vocabulary) in
// the last piece's layout.
struct KeptBlocksPlan {
  struct Piece {
    const SourceTensor* source;
    int64_t row, count;
    KeptLayout layout;
  };
  std::vector<const SourceTensor*> sources;  // every source tensor of the recipe, in order
  std::vector<Piece> pieces;
  int64_t col_begin = 0, col_end = 0;
  int64_t pad_rows = 0;
};
// The plan of keep_ggml_blocks for these arguments (same meaning), or nullopt when it would
// leave the weight to the materialize path.
std::optional<KeptBlocksPlan> plan_kept_blocks(const WeightSource& source, const WeightRecipe& recipe, int64_t cols,
                                               const QuantizationSpec& spec, const WeightSlice& slice = {});

// The FFN alignments of a tensor-parallel split (make_shard's `align`, parallel/shard.h):
// the columns a rank's slice of a down projection must start and end on for every layer's
// down weight to keep the file's blocks under `spec` (the loader's spec, automatic
// resolved): the least common multiple of the column block sizes of the down tensors that
// plan_kept_blocks keeps whole (256 for K-quants and IQ4_XS, 32 for Q4_0 ... Q8_0 and
// IQ4_NL), 1 when none is kept (float weights; --quant none, w8a8, fp8; a group size;
// int8's requantized formats): those are materialized, and quantized at load if the mode
// asks, from whatever columns the rank holds. `dense` from the dense layers' ffn_down,
// `expert` from every routed expert's down (llama.cpp's ffn_down_exps, one row block per
// expert: models/expert_source.h), `shared` from the shared expert's ffn_down_shexp.
// Model::load and kestrel-size (tools/held_weights.h) both split by it.
FfnAlignment ffn_split_alignment(const WeightSource& source, const Architecture& arch, const QuantizationSpec& spec);

// The plan of a token embedding table of `rows` x `cols` kept whole in the file's blocks as
// `spec` (QuantizationSpec::for_embedding) allows, or nullopt: a format not kept, or sources
// that do not stack to `rows` rows (the materialize path then reports the shape).
std::optional<KeptBlocksPlan> plan_kept_table(const WeightSource& source, const WeightRecipe& recipe, int64_t rows,
                                              int64_t cols, const QuantizationSpec& spec);

// A tied LM head (the same source tensors as the token embedding) that stays in the file's
// blocks doubles as the embedding table on a rank that is both the first and the last stage
// (pp = 1; WeightStore::load): at tp = 1 the head is the table; at tp > 1 the rank holds
// the whole table (the lookup needs every row) laid out for the head's kernels
// (Backend::prepare_quantized, the LM head's flags), followed by tied_table_slice's zero
// rows, and its head is a view of its rows [vocab_begin, vocab_begin + vocab) of it
// (quantized_row_view, models/row_view.h): no second copy. That needs the rank's rows to
// start on a row group of the CPU's interleaved layout (shard.vocab a multiple of
// kVocabRowAlignment, which make_shard gives unless the vocabulary is too small to round);
// otherwise, and on every rank of pp > 1, the first stage keeps the whole table in the
// file's blocks on its own (QuantizationSpec::for_embedding) and the last stage a copy of
// its head's vocabulary rows.
bool tied_head_doubles_as_embedding(const Architecture& arch, const Shard& shard);

// Whether `shard` holds a tied LM head beside the embedding table it is tied to (pp = 1):
// a dense table is then materialized with tied_table_slice's padding rows, and the head is
// a view of its rows whatever the tp (WeightStore::materialize, slice_served_by).
bool tied_head_reads_table(const Architecture& arch, const Shard& shard);

// The rows of the table a doubling tied head is kept as (the whole table when tp = 1): at
// tp > 1 the vocabulary, then zero rows up to tp x shard.vocab, which the last ranks' heads
// read as their padding rows (logits that never reach the gathered output). Lookups read
// only ids below the vocabulary (requests are checked against it).
WeightSlice tied_table_slice(const Shard& shard, int64_t vocab_size);

// When every source tensor of `recipe` holds ggml blocks that `spec` keeps as they are
// (the default group size, not transposed; int8 keeps Q8_0, Q5_0 and Q6_K; int4 and
// automatic keep every kept_layout format, never quantizing further than the file did),
// stores them in `store` and returns the weight: one of their layout, or, when the sources
// of a fused weight are stored in different formats, a QuantFormat::mixed weight whose parts
// are the runs of consecutive sources of one layout, each as stored. nullopt otherwise (the
// caller materializes and quantizes).
// `cols` is the canonical number of input columns. `slice`: a tensor-parallel rank's part:
// rows (row_ranges of the canonical weight, as they run across the sources: its heads' Q, K
// and V rows, its gate and up rows, its vocabulary rows, then its padding rows as zero
// blocks) and columns (a row-parallel weight's input columns: the output projection's
// heads, down's FFN columns), blocks copied as stored; columns that do not start and end
// on block boundaries are left to the materialize path (nullopt).
std::optional<QuantizedWeight> keep_ggml_blocks(WeightStore& store, const WeightSource& source,
                                                const WeightRecipe& recipe, int64_t cols,
                                                const QuantizationSpec& spec, const std::string& what,
                                                const WeightSlice& slice = {});

}  // namespace kestrel
