// kestrel/tokenizer.h: byte-level BPE (GPT-2 family) and SentencePiece BPE (Llama 1-2,
// Mistral, Gemma) tokenization.
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
  gpt2,    // the GPT-2 regex ('s|'t|... | ?\p{L}+ | ?\p{N}+ | ...)
  llama3,  // the Llama-3 / SmolLM2 style regex (case-insensitive contractions, 1-3 digit groups)
  smollm,  // every digit a word of its own, then the GPT-2 regex (HF Digits(individual_digits)
           // + ByteLevel; llama.cpp's "smollm" / "starcoder" pre-tokenizer type)
  gpt4o,   // OpenAI's o200k regex (GPT-4o, gpt-oss): a word is a run of capitals with the
           // lowercase letters and marks after it ("XMLHttpRequest" -> "XMLHttp" "Request"),
           // digits go in groups of 1-3, punctuation keeps trailing newlines and slashes;
           // llama.cpp's "gpt-4o"
};

// How the text between added tokens becomes tokens.
enum class TokenizerModel : uint8_t {
  // GPT-2 family: bytes as printable characters (bytes_to_unicode), a pre-tokenizer regex,
  // merges by rank.
  byte_level_bpe,
  // SentencePiece BPE: spaces written as U+2581 ("▁"), merges over UTF-8 characters, and a
  // character outside the vocab spelled with the byte tokens <0x00>..<0xFF>.
  sentencepiece,
};

// The SentencePiece rules that differ between llama.cpp and Hugging Face, and by family.
struct SentencePieceOptions {
  // Where a "▁" goes before a segment of text (the text before, between or after added
  // tokens; an empty segment gets none).
  enum class Prefix : uint8_t {
    none,                 // Gemma (add_space_prefix false; HF: no Prepend)
    every_segment,        // llama.cpp add_space_prefix; HF Prepend("▁") normalizer
    first_unless_space,   // HF Metaspace prepend_scheme "first": the segment at offset 0 only,
                          // and not when it starts with a space
    every_unless_space,   // HF Metaspace prepend_scheme "always"
  };
  Prefix prefix = Prefix::every_segment;
  // Which space decode() removes, undoing the prefix.
  enum class Strip : uint8_t {
    none,
    first_token,  // llama.cpp: a leading space of the first id's piece (even when that id
                  // is a skipped special token, which then removes nothing)
    text,         // HF Strip(" ", 1, 0) decoder: a leading space of the decoded text
  };
  Strip strip = Strip::first_token;
  // Scores by id (GGUF tokenizer.ggml.scores). Non-empty: the merge is the adjacent pair whose
  // joined piece is in the vocab with the highest score, leftmost first (llama.cpp and
  // SentencePiece; `merges` unused). Empty: merges by rank from `merges` (HF tokenizers).
  std::vector<float> scores;
};

// Everything needed to build a tokenizer, whatever file it came from.
struct TokenizerSpec {
  TokenizerModel model = TokenizerModel::byte_level_bpe;
  // Token strings indexed by id: in the byte-level alphabet (GPT-2's bytes_to_unicode) for
  // byte_level_bpe; SentencePiece pieces ("▁" for a space, <0xXX> for a byte) otherwise.
  std::vector<std::string> vocab;
  // Merge rules in priority order, as pairs of token strings.
  std::vector<std::pair<std::string, std::string>> merges;
  // Ids matched verbatim in input text before pre-tokenization (e.g. "<|endoftext|>").
  // Their vocab entries are plain text, not byte-level strings.
  std::vector<int32_t> special_ids;
  // Added tokens that are not special: also matched verbatim (even when encode() is told
  // not to parse special tokens) and plain text, but kept by decode(skip_special = true).
  std::vector<int32_t> added_ids;
  PreTokenizer pre_tokenizer = PreTokenizer::gpt2;  // byte_level_bpe only
  SentencePieceOptions sentencepiece;               // sentencepiece only
  std::optional<int32_t> bos_id;
  std::optional<int32_t> eos_id;
  bool add_bos = false;  // prepend bos_id in encode()
  bool add_eos = false;  // append eos_id in encode()
  // Stands for a byte whose byte-level token is missing from the vocab; without it
  // encode() refuses text holding such a byte (see Tokenizer::encode). GPT-2 style vocabs
  // hold all 256 bytes; some trained ones do not (SmolLM2 lacks 21, 0xfe and 0xff among them).
  // SentencePiece: stands for a character that is neither a piece nor spelled by byte tokens.
  std::optional<int32_t> unk_id;
  // A word that is itself a token becomes that token without merging (HF ignore_merges,
  // set by Llama-3's tokenizer.json).
  bool ignore_merges = false;
  // Prepend a space to text not starting with one (HF ByteLevel add_prefix_space); breaks
  // decode(encode(s)) == s, as it does in Hugging Face.
  bool add_prefix_space = false;
};

// Immutable and thread-safe after construction.
class Tokenizer {
 public:
  // Hugging Face tokenizer.json: model.type "BPE" with ByteLevel pre-tokenizer / decoder, or
  // with byte_fallback (SentencePiece: Llama / Mistral's Prepend + Replace normalizer or
  // Metaspace pre-tokenizer, Gemma's Replace; the Replace / ByteFallback / Fuse / Strip decoder).
  static Tokenizer from_json_file(const std::filesystem::path& path);
  // GPT-2's vocab.json + merges.txt pair.
  static Tokenizer from_vocab_merges(const std::filesystem::path& vocab_json,
                                     const std::filesystem::path& merges_txt);
  // Throws Error(format) naming the field at fault (an unknown token in a merge, an id out
  // of range); `source` (e.g. the file the spec was read from) starts every message.
  static Tokenizer from_spec(TokenizerSpec spec, const std::string& source = "tokenizer spec");
  // tokenizer.json in `dir`, else vocab.json + merges.txt; throws Error(io) naming `dir`.
  static Tokenizer from_directory(const std::filesystem::path& dir);
  // The tokenizer in a GGUF file's metadata (tokenizer.ggml.*): model "gpt2" (byte-level
  // BPE) or "llama" (SentencePiece, as llama.cpp reads it); else Error(unsupported).
  static Tokenizer from_gguf_file(const std::filesystem::path& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Encodes any bytes, valid UTF-8 or not; no byte is ever dropped.
  //  - Valid UTF-8 gives the ids Hugging Face `tokenizers` gives for the same str.
  //  - Bytes that are not valid UTF-8 (a stray continuation byte, a truncated sequence,
  //    0xc0, 0xc1, 0xf5..0xff, surrogates, overlongs) cannot reach HF, which takes str. Here
  //    the text is split into maximal valid runs, pre-tokenized as HF would, and maximal
  //    runs of invalid bytes, each of which is one word of byte tokens that BPE merges like
  //    any other word. So decode(encode(s)) == s for every byte string s when the vocab
  //    holds all 256 byte tokens and add_prefix_space is off (after the BOS it adds).
  //  - A byte whose byte-level token is missing from the vocab becomes the unk token when
  //    there is one; when there is none, encode() throws Error(invalid_argument) naming the
  //    byte and its offset (HF drops such a byte silently; Kestrel does not).
  //  - SentencePiece: valid UTF-8 gives the ids of the reference of the file it came from:
  //    llama.cpp for GGUF, HF `tokenizers` for tokenizer.json (they differ where the file's
  //    rules differ: Metaspace "first" adds no "▁" after a special token, llama.cpp does).
  //    A byte that is not part of a well-formed character becomes its byte token.
  // Special tokens in the text become their ids when `parse_special` is true.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;
  // Concatenated bytes of the tokens; special tokens included unless skip_special.
  // SentencePiece: the leading space the encoder's "▁" prefix stands for is removed as the
  // reference does (SentencePieceOptions::strip). Byte tokens give their raw bytes, so ids
  // that split a character decode to the partial bytes (HF writes U+FFFD per byte there).
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The raw bytes of one token (may be part of a UTF-8 sequence); for SentencePiece the
  // piece with "▁" as a space, a byte token as its byte. Streaming concatenates these.
  // Throws Error(invalid_argument) naming `id` when it is out of range (as decode does).
  const std::string& token_bytes(int32_t id) const;
  // The token's vocab string (byte-level alphabet, or a SentencePiece piece with "▁"; plain
  // text for added tokens).
  const std::string& token_text(int32_t id) const;

  int32_t vocab_size() const;
  std::optional<int32_t> token_id(std::string_view token_text) const;  // by vocab string
  bool is_special(int32_t id) const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  TokenizerModel model() const;
  PreTokenizer pre_tokenizer() const;  // byte_level_bpe only
  bool add_bos() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kestrel
