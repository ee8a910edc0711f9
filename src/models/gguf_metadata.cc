#include "models/gguf_metadata.h"

#include <limits>

#include "kestrel/error.h"

namespace kestrel {

std::optional<int> gguf_dim(const GgufFile& file, std::string_view key) {
  std::optional<int64_t> value = file.get_int(key);
  if (!value) return std::nullopt;
  if (*value < 0 || *value > std::numeric_limits<int32_t>::max())
    throw Error(ErrorCategory::format, file.path().string() + ": metadata key '" + std::string(key) +
                                           "' = " + std::to_string(*value) + " is out of range");
  return static_cast<int>(*value);
}

int gguf_required_dim(const GgufFile& file, std::string_view key) {
  if (std::optional<int> value = gguf_dim(file, key)) return *value;
  throw Error(ErrorCategory::format,
              file.path().string() + ": metadata key '" + std::string(key) + "' is missing");
}

int gguf_vocab_size(const GgufFile& file, const std::string& arch) {
  if (const GgufArray* tokens = file.find_array("tokenizer.ggml.tokens")) {
    if (tokens->size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
      throw Error(ErrorCategory::format, file.path().string() + ": tokenizer.ggml.tokens is too long");
    return static_cast<int>(tokens->size());
  }
  if (std::optional<int> n = gguf_dim(file, arch + ".vocab_size")) return *n;
  throw Error(ErrorCategory::format, file.path().string() +
                                         ": no vocabulary size (neither tokenizer.ggml.tokens nor " +
                                         arch + ".vocab_size)");
}

ModelConfig gguf_model_config(const GgufFile& file, const std::string& prefix, bool ffn_default_4h) {
  ModelConfig c;
  c.vocab_size = gguf_vocab_size(file, prefix);
  c.hidden_size = gguf_required_dim(file, prefix + ".embedding_length");
  c.num_layers = gguf_required_dim(file, prefix + ".block_count");
  c.num_heads = gguf_required_dim(file, prefix + ".attention.head_count");
  c.num_kv_heads = gguf_dim(file, prefix + ".attention.head_count_kv").value_or(c.num_heads);
  if (auto key_length = gguf_dim(file, prefix + ".attention.key_length")) {
    c.head_dim = *key_length;
  } else {
    if (c.num_heads > 0 && c.hidden_size % c.num_heads != 0)
      throw Error(ErrorCategory::format, file.path().string() + ": " + prefix + ".embedding_length " +
                                             std::to_string(c.hidden_size) + " is not divisible by " + prefix +
                                             ".attention.head_count " + std::to_string(c.num_heads));
    c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  }
  c.ffn_size = ffn_default_4h ? gguf_dim(file, prefix + ".feed_forward_length").value_or(4 * c.hidden_size)
                              : gguf_required_dim(file, prefix + ".feed_forward_length");
  c.max_positions = gguf_required_dim(file, prefix + ".context_length");
  const auto eps = file.get_float(prefix + ".attention.layer_norm_rms_epsilon");
  c.norm_eps = static_cast<float>(eps ? *eps : file.get_float(prefix + ".attention.layer_norm_epsilon").value_or(1e-5));
  c.tied_embeddings = file.find_tensor("output.weight") == nullptr;
  return c;
}

}  // namespace kestrel
