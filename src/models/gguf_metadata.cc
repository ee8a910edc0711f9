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

}  // namespace kestrel
