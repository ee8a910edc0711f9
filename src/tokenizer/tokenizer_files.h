// tokenizer/tokenizer_files.h: reads Hugging Face tokenizer files into a TokenizerSpec.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "kestrel/tokenizer.h"
#include "tokenizer/file_fields.h"

namespace kestrel::tokenizer {

// Where a spec came from, so that errors found while building it name the file and field.
struct SpecOrigin {
  std::string source;                   // starts every message: a path, "tokenizer spec"
  std::string merges_field = "merges";  // "model.merges" in tokenizer.json
  std::vector<size_t> merge_lines;      // merges.txt: the 1-based line of each merge
  std::string merge_label(size_t index) const;
};

struct LoadedSpec {
  TokenizerSpec spec;
  SpecOrigin origin;
};

// Hugging Face tokenizer.json; tokenizer_config.json beside it may override bos / eos,
// except a token that the post_processor template adds (it is what encode() adds).
LoadedSpec read_tokenizer_json(const std::filesystem::path& path);
// vocab.json + merges.txt (GPT-2 pre-tokenizer); tokenizer_config.json beside vocab.json
// may add special tokens (added_tokens_decoder) and override bos / eos.
LoadedSpec read_vocab_merges(const std::filesystem::path& vocab_json,
                             const std::filesystem::path& merges_txt);

// The SentencePiece parts of a tokenizer.json whose BPE model has byte_fallback: the
// normalizer, pre-tokenizer and decoder, into spec.sentencepiece (sentencepiece_json.cc).
void read_sentencepiece_json(const FileContext& file, const nlohmann::json& root, TokenizerSpec& spec);

// Shared by both readers.
// GPT-2's convention: <|endoftext|>, where the vocab has it, is both bos and eos.
void default_special_tokens(TokenizerSpec& spec);
// tokenizer_config.json in `dir`, if there: its bos_token / eos_token override the spec's;
// with `read_added`, its added_tokens_decoder also marks added and special tokens.
void apply_tokenizer_config(const std::filesystem::path& dir, TokenizerSpec& spec, bool read_added);

}  // namespace kestrel::tokenizer
