#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>

#include "kestrel/error.h"
#include "tokenizer/byte_level.h"

namespace kestrel::tokenizer {

namespace {

// Unicode White_Space, which \s means in Hugging Face's regex engine (Oniguruma). PCRE2's
// \s also matches U+180E (MONGOLIAN VOWEL SEPARATOR), no longer a space since Unicode 6.3.
constexpr std::string_view kWhiteSpace =
    R"(\t-\r\x20\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000})";

// `pattern` with \s and \S spelled out as kWhiteSpace, inside and outside brackets.
std::string with_unicode_white_space(std::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char next = pattern[++i];
      if (next == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (next == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        out += c;
        out += next;
      }
      continue;
    }
    if (c == '[') in_class = true;
    if (c == ']') in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

struct WordSplitter::Regex {
  pcre2_code* code = nullptr;
  explicit Regex(std::string_view hf_pattern) {
    std::string pattern = with_unicode_white_space(hf_pattern);
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                         PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR buffer[256];
      pcre2_get_error_message(error_code, buffer, sizeof(buffer));
      throw Error(ErrorCategory::internal, "pre-tokenizer regex does not compile at offset " +
                                               std::to_string(error_offset) + ": " +
                                               reinterpret_cast<const char*>(buffer));
    }
    // JIT is an optimization only: where it is unavailable the interpreter runs.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  }
  ~Regex() { pcre2_code_free(code); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
};

namespace {

// Per-thread match state, shared by every tokenizer on the thread: match data with room
// for the whole-match offsets only, and a JIT stack larger than PCRE2's 32 KiB default.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, nullptr);

  MatchScratch() {
    if (data == nullptr || context == nullptr) {
      throw Error(ErrorCategory::internal, "pre-tokenizer: out of memory for PCRE2 match data");
    }
    if (stack != nullptr) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

MatchScratch& scratch() {
  thread_local MatchScratch instance;
  return instance;
}

}  // namespace

WordSplitter::WordSplitter(PreTokenizer kind) {
  switch (kind) {
    case PreTokenizer::gpt2:
      words_ = std::make_unique<Regex>(kGpt2Pattern);
      break;
    case PreTokenizer::llama3:
      words_ = std::make_unique<Regex>(kLlama3Pattern);
      break;
    case PreTokenizer::gpt4o:
      words_ = std::make_unique<Regex>(kGpt4oPattern);
      break;
    case PreTokenizer::smollm:
      words_ = std::make_unique<Regex>(kGpt2Pattern);
      digit_ = std::make_unique<Regex>(R"(\p{N})");
      break;
  }
  if (!words_) {
    throw Error(ErrorCategory::invalid_argument,
                "pre-tokenizer: unknown kind " + std::to_string(static_cast<int>(kind)));
  }
}

WordSplitter::WordSplitter(WordSplitter&&) noexcept = default;
WordSplitter& WordSplitter::operator=(WordSplitter&&) noexcept = default;
WordSplitter::~WordSplitter() = default;

void WordSplitter::split(std::string_view text, std::vector<std::string_view>& words) const {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t valid_end = pos;
    while (valid_end < text.size()) {
      size_t len = utf8_char_length(text.substr(valid_end));
      if (len == 0) break;
      valid_end += len;
    }
    if (valid_end > pos) {
      split_valid(text.substr(pos, valid_end - pos), words);
      pos = valid_end;
    }
    size_t invalid_end = pos;
    while (invalid_end < text.size() && utf8_char_length(text.substr(invalid_end)) == 0) {
      ++invalid_end;
    }
    if (invalid_end > pos) {
      words.push_back(text.substr(pos, invalid_end - pos));
      pos = invalid_end;
    }
  }
}

void WordSplitter::split_valid(std::string_view run, std::vector<std::string_view>& words) const {
  if (!digit_) {
    split_with(*words_, run, words);
    return;
  }
  // Hugging Face's Digits(individual_digits) runs first: every digit is a word of its
  // own and the regex sees only the text between digits.
  std::vector<std::string_view> pieces;
  split_with(*digit_, run, pieces);
  for (std::string_view piece : pieces) split_with(*words_, piece, words);
}

// Regex split with the matches isolated: matches and the gaps between them are words.
// `run` is well-formed UTF-8.
void WordSplitter::split_with(const Regex& regex, std::string_view run,
                              std::vector<std::string_view>& words) {
  MatchScratch& s = scratch();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(run.data());
  size_t pos = 0;
  while (pos < run.size()) {
    int rc =
        pcre2_match(regex.code, subject, run.size(), pos, PCRE2_NO_UTF_CHECK, s.data, s.context);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(regex.code, subject, run.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       s.data, s.context);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    size_t start = pos;
    size_t end = pos;
    if (rc >= 0) {
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(s.data);
      start = ovector[0];
      end = ovector[1];
    }
    if (end <= start) {
      // A matching failure (resource limit) or an empty match: take one character as a
      // word and go on, so the split stays lossless whatever happens.
      start = pos;
      end = pos + utf8_char_length(run.substr(pos));
    }
    if (start > pos) words.push_back(run.substr(pos, start - pos));
    words.push_back(run.substr(start, end - start));
    pos = end;
  }
  if (pos < run.size()) words.push_back(run.substr(pos));
}

}  // namespace kestrel::tokenizer
