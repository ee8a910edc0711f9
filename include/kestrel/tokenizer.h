// kestrel/tokenizer.h: byte-level BPE (GPT-2 family) tokenization.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kestrel {

// How text is split into words before BPE runs on each word.
enum class PreTokenizer : uint8_t {
  gpt2,   // the GPT-2 regex ('s|'t|... | ?\p{L}+ | ?\p{N}+ | ...)
  llama3, // the Llama-3 / SmolLM2 style regex (case-insensitive contractions, 1-3 digit groups)
};

// Everything needed to build a tokenizer, whatever file it came from.
struct TokenizerSpec {
  // Token strings in the byte-level alphabet (GPT-2's bytes_to_unicode), indexed by id.
  std::vector<std::string> vocab;
  // Merge rules in priority order, as pairs of token strings.
  std::vector<std::pair<std::string, std::string>> merges;
  // Ids matched verbatim in input text before pre-tokenization (e.g. "<|endoftext|>").
  std::vector<int32_t> special_ids;
  PreTokenizer pre_tokenizer = PreTokenizer::gpt2;
  std::optional<int32_t> bos_id;
  std::optional<int32_t> eos_id;
  bool add_bos = false;  // prepend bos_id in encode()
};

// Immutable and thread-safe after construction.
class Tokenizer {
 public:
  // Hugging Face tokenizer.json (model.type "BPE", ByteLevel pre-tokenizer / decoder).
  static Tokenizer from_json_file(const std::filesystem::path& path);
  // GPT-2's vocab.json + merges.txt pair.
  static Tokenizer from_vocab_merges(const std::filesystem::path& vocab_json,
                                     const std::filesystem::path& merges_txt);
  static Tokenizer from_spec(TokenizerSpec spec);
  // tokenizer.json in `dir`, else vocab.json + merges.txt; throws Error(io) naming `dir`.
  static Tokenizer from_directory(const std::filesystem::path& dir);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Encodes any UTF-8 text (invalid UTF-8 bytes still round-trip through byte tokens).
  // Special tokens in the text become their ids when `parse_special` is true.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;
  // Concatenated bytes of the tokens; special tokens included unless skip_special.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The raw bytes of one token (may be part of a UTF-8 sequence).
  const std::string& token_bytes(int32_t id) const;

  int32_t vocab_size() const;
  std::optional<int32_t> token_id(std::string_view token_text) const;  // by vocab string
  bool is_special(int32_t id) const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kestrel
