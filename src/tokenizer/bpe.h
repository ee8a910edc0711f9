// tokenizer/bpe.h: the byte-pair merge loop over one pre-tokenized word.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kestrel::tokenizer {

// One merge rule with its tokens resolved to ids; its rank is its index in the list.
struct MergeRule {
  int32_t left;
  int32_t right;
  int32_t merged;  // the id of left + right
};

// Immutable after construction; encode() is const and thread-safe.
class BytePairEncoder {
 public:
  // byte_ids[b]: the id of the token that is byte b alone (its byte-level character), or
  // -1 when the vocabulary lacks it (all -1 when only merge() is used); such a byte becomes `unk_id`. Without one the caller
  // must not pass such a byte (Tokenizer::encode refuses the text first); encode() throws
  // Error(internal) if it does. A pair listed twice takes its later rank (as HF does).
  BytePairEncoder(const std::array<int32_t, 256>& byte_ids, const std::vector<MergeRule>& merges,
                  std::optional<int32_t> unk_id);

  // Appends the ids of `word` (raw bytes) to `out`: starts from one token per byte and
  // repeatedly applies the lowest-ranked merge present, leftmost first, until none applies.
  void encode(std::string_view word, std::vector<int32_t>& out) const;
  // The merge loop alone, from the given symbols (SentencePiece's characters and byte
  // tokens); appends the merged ids to `out`.
  void merge(std::span<const int32_t> symbols, std::vector<int32_t>& out) const;

 private:
  struct Merge {
    uint32_t rank;
    int32_t merged;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  const Merge* find(int32_t left, int32_t right) const;

  std::array<int32_t, 256> byte_ids_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<int32_t> unk_id_;
};

}  // namespace kestrel::tokenizer
