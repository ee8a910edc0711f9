// tokenizer/pretokenize.h: splits text into the words BPE runs on, with PCRE2.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "kestrel/tokenizer.h"

namespace kestrel::tokenizer {

// The regexes, as Hugging Face's tokenizer.json files spell them.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// OpenAI's o200k_base (tiktoken), as gpt-oss's tokenizer.json and GPT-4o's spell it.
inline constexpr std::string_view kGpt4oPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Compiled once per tokenizer; split() is const and thread-safe (match data is per thread).
class WordSplitter {
 public:
  explicit WordSplitter(PreTokenizer kind);
  WordSplitter(WordSplitter&&) noexcept;
  WordSplitter& operator=(WordSplitter&&) noexcept;
  ~WordSplitter();

  // Appends the words of `text` to `words`; concatenated, they are exactly `text`.
  // Well-formed UTF-8 runs go through the regex; each maximal run of bytes that is not
  // well-formed UTF-8 becomes one word of its own, so any byte string splits losslessly.
  void split(std::string_view text, std::vector<std::string_view>& words) const;

 private:
  struct Regex;
  void split_valid(std::string_view run, std::vector<std::string_view>& words) const;
  static void split_with(const Regex& regex, std::string_view run,
                         std::vector<std::string_view>& words);

  std::unique_ptr<Regex> words_;  // the GPT-2 or Llama-3 pattern
  std::unique_ptr<Regex> digit_;  // \p{N}: isolates single digits first (smollm only)
};

}  // namespace kestrel::tokenizer
