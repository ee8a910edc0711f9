// kestrel/model.h: a loaded model, immutable and shared by any number of sessions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kestrel/parallel.h"
#include "kestrel/tokenizer.h"
#include "kestrel/types.h"

namespace kestrel {

namespace detail {
struct ModelState;  // runtime internals (weights, backend, architecture)
}

// Weight-only quantization of the linear layers and the LM head, done once at load (the
// embeddings and norms stay in the runtime dtype).
enum class Quantization : uint8_t {
  // The default: each weight as its file stores it. A GGUF file's quantized tensors stay
  // in their blocks (Q8_0 as int8 and Q4_1 as int4, groups of 32; Q4_0 and the others as
  // stored) and run on the quantized kernels (on the CPU with 8-bit activations, as
  // llama.cpp computes them); float weights are held in the runtime dtype. Nothing is
  // quantized further.
  automatic,
  none,  // weights in the runtime dtype (quantized GGUF tensors dequantized at load)
  int8,  // int8, symmetric: one scale per output channel, or per group of quant_group_size
  int4,  // 4-bit, asymmetric: a scale and a min per group of quant_group_size columns
         // (the LM head in int8: the most sensitive weight)
  w8a8,  // int8 weights per output channel and int8 activations, one scale per token
         // (dynamic), the prefill products int8 GEMMs on the CPU; the LM head int8
         // weight-only. A checkpoint written by kestrel-quantize (SmoothQuant) is the
         // accurate way to get there; this mode quantizes any model at load without smoothing.
  fp8,   // FP8 E4M3 weights, one scale per output channel (max |w| / 448), and E4M3
         // activations, one scale per token (dynamic): what Hopper's FP8 GEMMs compute. The
         // CPU emulates the activation rounding and multiplies in f32; CUDA prefill runs on
         // the FP8 tensor cores (cuBLASLt) where the device and shape allow
         // (docs/QUANTIZATION.md); the LM head int8 weight-only, as for w8a8. Checkpoints of
         // stored int8 / E4M3 weights (kestrel-quantize --weights int8 | fp8) load as the
         // mode they declare, their integers as stored.
};
const char* to_string(Quantization quantization) noexcept;
// Parses "auto", "none", "int8", "int4", "w8a8", "fp8"; throws Error(invalid_argument) naming `what`
// otherwise.
Quantization parse_quantization(std::string_view text, std::string_view what = "quantization");

// How to load a model. Validated once by Model::load; errors name the field.
struct ModelOptions {
  Device device = Device::cpu();
  // Runtime precision of weights and activations. Unset: f32 on the CPU, f16 on CUDA.
  std::optional<DType> dtype;
  // CPU backend threads; 0 uses every core.
  int num_threads = 0;
  // Tensor / pipeline parallel split (kestrel/parallel.h); 1 x 1 by default.
  ParallelOptions parallel;
  Quantization quantization = Quantization::automatic;
  // Columns per quantization group (int8 / int4): a multiple of 32 in [32, 1024]. 0 picks the default:
  // per output channel for int8, 32 for int4. With the default, GGUF tensors already
  // quantized are kept exactly as stored (groups of 32) instead of being dequantized and
  // quantized again: Q8_0 for int8; Q4_0 / Q4_1 (as int4) and Q8_0 (as int8) for int4.
  int quant_group_size = 0;
  // CPU backend: compute every row of a step as it would be computed alone, whatever else
  // shares the step (the kernel of a quantized linear layer is then chosen by the weight's
  // layout only, never by the step's token count), so a greedy request's tokens do not
  // depend on the requests it is batched with. Costs prompt-processing speed on quantized
  // weights (8-bit-activation dot products instead of sgemm); kestrel-server turns it on.
  // Refused on CUDA (Error(unsupported)).
  bool batch_invariant = false;
};

// The shape of a decoder-only transformer, as read from the model's files.
struct ModelConfig {
  std::string architecture;  // "gpt2", "llama"
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;  // < num_heads for GQA, 1 for MQA
  int head_dim = 0;
  int ffn_size = 0;      // inner size of the feed-forward block
  int max_positions = 0; // longest sequence the model supports
  float norm_eps = 1e-5f;
  bool tied_embeddings = true;
  // Mixture of experts (Mixtral, Qwen2-MoE); num_experts 0: a dense model. A sparse layer
  // routes each token to experts_per_token of num_experts gated FFNs of expert_ffn_size,
  // plus a shared expert of shared_expert_ffn_size (0: none); its other layers (if any)
  // keep the dense FFN of ffn_size.
  int num_experts = 0;
  int experts_per_token = 0;
  int expert_ffn_size = 0;
  int shared_expert_ffn_size = 0;
};

class Model {
 public:
  // Loads a Hugging Face model directory (config.json, *.safetensors or sharded
  // safetensors with model.safetensors.index.json, tokenizer.json or vocab.json +
  // merges.txt) or a GGUF file (llama.cpp's format: any regular file starting with the
  // GGUF magic; architecture "llama" or "gpt2", byte-level BPE tokenizer, tensors in
  // F32 / F16 / BF16 / Q8_0 / Q4_0 / Q4_1, quantized ones dequantized at load). Weights
  // are memory-mapped and converted once to the runtime precision on the chosen device.
  // Throws kestrel::Error naming the file, tensor or option at fault.
  static std::shared_ptr<const Model> load(const std::filesystem::path& path,
                                           const ModelOptions& options = {});
  // A model of the shape `config` describes (architecture "gpt2" or "llama"; num_kv_heads
  // and head_dim 0 take their defaults) with random weights made in memory, for
  // benchmarks where no model file is at hand: the same seed gives the same weights.
  // Linear weights and embeddings are uniform with standard deviation 0.02, norm scales
  // near 1. Its tokenizer has the 256 bytes and then placeholder tokens, no EOS, and no
  // chat template; path() names it "random <architecture> (seed N)". Options as for load
  // (quantization and tensor / pipeline parallel included); throws Error(invalid_argument)
  // naming a field the architecture cannot express, Error(format) for invalid dimensions.
  static std::shared_ptr<const Model> random(const ModelConfig& config, const ModelOptions& options = {},
                                             uint64_t seed = 1);

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  const Tokenizer& tokenizer() const;
  Device device() const;
  DType dtype() const;
  // Bytes of weights held on the model's device (this rank's slice in a parallel run).
  size_t weight_bytes() const;
  // This process's place in a tensor / pipeline parallel run.
  const ParallelInfo& parallel() const;
  // How the linear weights and the LM head are held, by format: "int4 x120 + int8 x1" (a
  // GGUF file's blocks kept as stored), "f32 x121"; a fused weight whose parts a file stores
  // in different formats counts as its formats joined ("q4_k x3 + q4_k+q6_k x1"); a
  // mixture of experts' routers and expert weights count too (the two-layer, six-expert
  // tests/fixtures/tiny-gpt-oss-mxfp4 on the CPU: "f32 x7 + mxfp4 x24"); what the status
  // lines print.
  std::string weight_formats() const;
  const std::filesystem::path& path() const;
  // The model's chat template (Jinja source: tokenizer.chat_template in a GGUF file,
  // chat_template in tokenizer_config.json); empty when it has none. See kestrel/chat.h.
  const std::string& chat_template() const;

  // Runtime internals, for Session and Decoder.
  const detail::ModelState& state() const { return *state_; }

 private:
  explicit Model(std::unique_ptr<detail::ModelState> state);
  std::unique_ptr<detail::ModelState> state_;
};

}  // namespace kestrel
