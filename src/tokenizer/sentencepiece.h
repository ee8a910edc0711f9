// tokenizer/sentencepiece.h: SentencePiece BPE over one segment of text, as llama.cpp does
// it (merges by score) and as Hugging Face `tokenizers` does it (merges by rank, byte
// fallback per character).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/token_map.h"

namespace kestrel::tokenizer {

// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space.
inline constexpr std::string_view kMetaspace = "\xe2\x96\x81";

// `text` with every ' ' written as "▁" (llama.cpp's llama_escape_whitespace, HF's Replace).
std::string escape_spaces(std::string_view text);
// The byte of a byte piece "<0xXX>" (upper-case hex, as SentencePiece writes them), or -1.
int byte_of_piece(std::string_view piece);
// The bytes a piece stands for: a byte piece its byte, any other piece with "▁" as ' '.
std::string piece_bytes(std::string_view piece);

// Immutable after construction; encode() is const and thread-safe.
class SentencePieceEncoder {
 public:
  // `ids`: every token string -> id (outlives this). `scores` non-empty (one per id): merge
  // by score, llama.cpp's llm_tokenizer_spm; empty: merge by the ranks in `ranked`
  // (outlives this), HF's BPE with byte_fallback and fuse_unk.
  SentencePieceEncoder(const TokenMap& ids, std::vector<float> scores,
                       const BytePairEncoder* ranked, std::optional<int32_t> unk_id);

  // Appends the ids of `escaped` (spaces already "▁", prefix already added) to `out`.
  // Throws Error(invalid_argument) naming the byte when a character is neither a piece,
  // nor spelled by byte pieces, and there is no unknown token.
  void encode(std::string_view escaped, std::vector<int32_t>& out) const;

 private:
  void encode_scored(std::string_view text, std::vector<int32_t>& out) const;
  void encode_ranked(std::string_view text, std::vector<int32_t>& out) const;
  std::optional<int32_t> find(std::string_view piece) const;
  [[noreturn]] static void unencodable(std::string_view text, size_t offset);

  const TokenMap& ids_;
  std::vector<float> scores_;
  const BytePairEncoder* ranked_;
  std::optional<int32_t> unk_id_;
  std::array<int32_t, 256> byte_ids_;  // the id of "<0xXX>" for each byte, or -1
};

}  // namespace kestrel::tokenizer
