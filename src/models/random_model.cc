#include "models/random_model.h"

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/half.h"
#include "kestrel/error.h"
#include "tokenizer/byte_level.h"

namespace kestrel {

namespace {

[[noreturn]] void invalid(const std::string& message) {
  throw Error(ErrorCategory::invalid_argument, "random model: " + message);
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_name(std::string_view name, uint64_t seed) {
  uint64_t h = splitmix64(seed);
  for (unsigned char ch : name) h = splitmix64(h ^ ch);
  return h;
}

// Element i of a tensor: center + U(-spread, spread), from (tensor key, i) alone.
float random_value(uint64_t key, size_t i, float center, float spread) {
  const uint64_t bits = splitmix64(key + i);
  const float u = static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 bits
  return center + spread * (2.0f * u - 1.0f);
}

}  // namespace

nlohmann::json random_model_hf_config(const ModelConfig& c) {
  nlohmann::json j;
  j["vocab_size"] = c.vocab_size;
  if (c.num_experts != 0 || c.experts_per_token != 0 || c.expert_ffn_size != 0 || c.shared_expert_ffn_size != 0)
    invalid("num_experts: random models are dense (mixture-of-experts fields must be 0)");
  if (c.architecture == "gpt2") {
    if (c.num_kv_heads != 0 && c.num_kv_heads != c.num_heads)
      invalid("gpt2 has no grouped-query attention (num_kv_heads must equal num_heads)");
    if (c.num_heads > 0 && c.head_dim != 0 && c.head_dim * c.num_heads != c.hidden_size)
      invalid("gpt2's head_dim is hidden_size / num_heads");
    if (!c.tied_embeddings) invalid("gpt2's LM head is tied to its embedding (tied_embeddings)");
    j["model_type"] = "gpt2";
    j["n_embd"] = c.hidden_size;
    j["n_layer"] = c.num_layers;
    j["n_head"] = c.num_heads;
    j["n_inner"] = c.ffn_size;
    j["n_positions"] = c.max_positions;
    j["layer_norm_epsilon"] = c.norm_eps;
  } else if (c.architecture == "llama") {
    j["model_type"] = "llama";
    j["hidden_size"] = c.hidden_size;
    j["num_hidden_layers"] = c.num_layers;
    j["num_attention_heads"] = c.num_heads;
    j["num_key_value_heads"] = c.num_kv_heads != 0 ? c.num_kv_heads : c.num_heads;
    if (c.head_dim != 0) j["head_dim"] = c.head_dim;
    j["intermediate_size"] = c.ffn_size;
    j["max_position_embeddings"] = c.max_positions;
    j["rms_norm_eps"] = c.norm_eps;
    j["tie_word_embeddings"] = c.tied_embeddings;
  } else {
    invalid("architecture '" + c.architecture + "' is not supported (gpt2, llama)");
  }
  return j;
}

RandomWeightSource::RandomWeightSource(const Architecture& arch, DType dtype, uint64_t seed)
    : dtype_(dtype), seed_(seed) {
  if (dtype != DType::f32 && dtype != DType::f16 && dtype != DType::bf16)
    invalid(std::string("weights cannot be made in ") + to_string(dtype));
  for (int slot = 0; slot <= static_cast<int>(WeightSlot::down_bias); ++slot) {
    const auto s = static_cast<WeightSlot>(slot);
    if (s <= WeightSlot::lm_head_bias) {  // the model-level slots
      add(arch, s, -1);
    } else {
      for (int layer = 0; layer < arch.config.num_layers; ++layer) add(arch, s, layer);
    }
  }
}

void RandomWeightSource::add(const Architecture& arch, WeightSlot slot, int layer) {
  const WeightRecipe recipe = arch.recipe(slot, layer);
  if (recipe.sources.empty()) return;
  const std::vector<int64_t> shape = canonical_shape(arch, slot);
  const std::vector<int64_t> rows = source_rows(arch, slot, recipe.sources.size());
  const bool norm_scale = slot == WeightSlot::final_norm_weight || slot == WeightSlot::attn_norm_weight ||
                          slot == WeightSlot::ffn_norm_weight;
  for (size_t k = 0; k < recipe.sources.size(); ++k) {
    const std::string& name = recipe.sources[k];
    if (entries_.count(name)) continue;  // a tied LM head names the embedding again
    Entry e;
    e.tensor.name = name;
    e.tensor.dtype = dtype_;
    e.tensor.file = describe();
    if (shape.size() == 2)
      e.tensor.shape = recipe.transposed ? std::vector<int64_t>{shape[1], rows[k]} : std::vector<int64_t>{rows[k], shape[1]};
    else
      e.tensor.shape = {rows[k]};
    e.center = norm_scale ? 1.0f : 0.0f;
    e.spread = norm_scale ? 0.1f : 0.02f * std::sqrt(3.0f);  // U(-a, a) has standard deviation a / sqrt(3)
    entries_.emplace(name, std::move(e));
  }
}

const SourceTensor* RandomWeightSource::find(std::string_view name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return nullptr;
  Entry& e = it->second;
  if (!e.tensor.data) {
    const size_t n = static_cast<size_t>(e.tensor.numel());
    const size_t es = dtype_size(dtype_);
    e.bytes.resize(n * es);
    const uint64_t key = hash_name(name, seed_);
    uint8_t* out = e.bytes.data();
    const DType dtype = dtype_;
    const float center = e.center, spread = e.spread;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
      const float v = random_value(key, static_cast<size_t>(i), center, spread);
      uint16_t h;
      switch (dtype) {
        case DType::f32: std::memcpy(out + 4 * i, &v, 4); break;
        case DType::f16: h = f32_to_f16(v); std::memcpy(out + 2 * i, &h, 2); break;
        default: h = f32_to_bf16(v); std::memcpy(out + 2 * i, &h, 2); break;
      }
    }
    e.tensor.data = e.bytes.data();
    e.tensor.bytes = e.bytes.size();
  }
  return &e.tensor;
}

void RandomWeightSource::release(const SourceTensor& tensor) const {
  auto it = entries_.find(tensor.name);
  if (it == entries_.end()) return;
  it->second.bytes = {};
  it->second.tensor.data = nullptr;
  it->second.tensor.bytes = 0;
}

std::string RandomWeightSource::describe() const {
  return "random weights (seed " + std::to_string(seed_) + ")";
}

Tokenizer random_model_tokenizer(int vocab_size) {
  if (vocab_size < 1) invalid("vocab_size = " + std::to_string(vocab_size) + " (must be >= 1)");
  TokenizerSpec spec;
  spec.vocab.reserve(static_cast<size_t>(vocab_size));
  for (int b = 0; b < 256 && b < vocab_size; ++b) spec.vocab.push_back(tokenizer::byte_to_symbol(static_cast<uint8_t>(b)));
  for (int id = 256; id < vocab_size; ++id) spec.vocab.push_back("<random_" + std::to_string(id) + ">");
  return Tokenizer::from_spec(std::move(spec), "random model tokenizer");
}

}  // namespace kestrel
