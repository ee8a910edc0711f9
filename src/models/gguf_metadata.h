// models/gguf_metadata.h: typed reads of a GGUF file's model metadata, with errors that
// name the file and the key (the GGUF counterpart of config_json.h).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "loaders/gguf.h"

namespace kestrel {

// A dimension or count: an integer key in [0, 2^31). nullopt when absent; Error(format)
// naming the file and key when it holds another type or is out of range.
std::optional<int> gguf_dim(const GgufFile& file, std::string_view key);
// Like gguf_dim, but the key must be present.
int gguf_required_dim(const GgufFile& file, std::string_view key);
// The vocabulary size: the length of tokenizer.ggml.tokens, else "<arch>.vocab_size".
int gguf_vocab_size(const GgufFile& file, const std::string& arch);

}  // namespace kestrel
