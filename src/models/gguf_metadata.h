// models/gguf_metadata.h: typed reads of a GGUF file's model metadata, with errors that
// name the file and the key (the GGUF counterpart of config_json.h).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "kestrel/model.h"
#include "loaders/gguf.h"

namespace kestrel {

// A dimension or count: an integer key in [0, 2^31). nullopt when absent; Error(format)
// naming the file and key when it holds another type or is out of range.
std::optional<int> gguf_dim(const GgufFile& file, std::string_view key);
// Like gguf_dim, but the key must be present.
int gguf_required_dim(const GgufFile& file, std::string_view key);
// The vocabulary size: the length of tokenizer.ggml.tokens, else "<arch>.vocab_size".
int gguf_vocab_size(const GgufFile& file, const std::string& arch);

// The dimensions every architecture reads the same way from llama.cpp's "<prefix>.*" keys:
// vocabulary, hidden size, layers, heads, KV heads (head_count_kv, else the heads), head
// size (key_length, else hidden / heads, which must divide), FFN size (feed_forward_length;
// when absent 4 x hidden if `ffn_default_4h`, else an error), context length, norm epsilon
// (the RMS or the LayerNorm key, else 1e-5), and a tied LM head (no output.weight). The
// caller sets what is its own (architecture name, layer kinds, recipes).
ModelConfig gguf_model_config(const GgufFile& file, const std::string& prefix, bool ffn_default_4h = false);

}  // namespace kestrel
