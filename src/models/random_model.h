// models/random_model.h: a model of a given shape with random weights, made in memory, for
// benchmarks on machines where no model file is (the GPU machine: files cannot travel
// there) and for tests that need a shape no fixture has. Model::random is the public entry.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "kestrel/model.h"
#include "kestrel/tokenizer.h"
#include "loaders/weight_source.h"
#include "models/architecture.h"

namespace kestrel {

// The Hugging Face config.json that describes `config` (architecture "gpt2" or "llama");
// throws Error(invalid_argument) naming the field that the architecture cannot express.
nlohmann::json random_model_hf_config(const ModelConfig& config);

// Every source tensor an architecture's recipe names, generated on first use in `dtype`
// (f32, f16 or bf16) from a counter-based generator: the same seed gives the same weights on
// every machine and thread count. Linear weights and embeddings are uniform with standard
// deviation 0.02 (the usual initializer), norm scales 1 + U(-0.1, 0.1), biases and norm
// shifts uniform with standard deviation 0.02. Not thread-safe (one loader reads it).
class RandomWeightSource final : public WeightSource {
 public:
  RandomWeightSource(const Architecture& arch, DType dtype, uint64_t seed);
  const SourceTensor* find(std::string_view name) const override;
  std::string describe() const override;
  // Frees the tensor's values (made again, the same, if it is found again).
  void release(const SourceTensor& tensor) const override;

 private:
  struct Entry {
    SourceTensor tensor;  // data is null until first found
    float center = 0.0f;  // values are center + U(-spread, spread)
    float spread = 0.0f;
    std::vector<uint8_t> bytes;
  };
  void add(const Architecture& arch, WeightSlot slot, int layer);
  DType dtype_;
  uint64_t seed_;
  mutable std::map<std::string, Entry, std::less<>> entries_;
};

// A byte-level tokenizer with `vocab_size` ids: the 256 bytes first (as many as fit), then
// tokens "<random_N>" that BPE never produces (random prompts use ids directly). No EOS.
Tokenizer random_model_tokenizer(int vocab_size);

}  // namespace kestrel
