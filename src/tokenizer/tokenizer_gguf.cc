// The tokenizer of a GGUF file: llama.cpp's tokenizer.ggml.* metadata into a TokenizerSpec
// (model "gpt2": byte-level BPE; model "llama": SentencePiece).
#include "tokenizer/tokenizer_gguf.h"

#include <limits>

#include "kestrel/error.h"
#include "tokenizer/file_fields.h"
#include "tokenizer/tokenizer_files.h"

namespace kestrel::tokenizer {
namespace {

// llama.cpp's llama_token_type values in tokenizer.ggml.token_type.
constexpr int64_t kUnknownToken = 2;
constexpr int64_t kControlToken = 3;
constexpr int64_t kUserDefinedToken = 4;

PreTokenizer pre_tokenizer_of(const FileContext& file, const std::optional<std::string>& pre) {
  if (!pre || *pre == "gpt-2" || *pre == "default") return PreTokenizer::gpt2;
  if (*pre == "smollm") return PreTokenizer::smollm;
  if (*pre == "llama-bpe" || *pre == "llama3" || *pre == "llama-v3") return PreTokenizer::llama3;
  if (*pre == "gpt-4o") return PreTokenizer::gpt4o;
  file.fail(ErrorCategory::unsupported,
            "tokenizer.ggml.pre " + in_quotes(*pre) +
                " is not supported (gpt-2, default, smollm, llama-bpe, llama3, gpt-4o)");
}

std::optional<int32_t> token_id_key(const FileContext& file, const GgufFile& gguf, const char* key) {
  std::optional<int64_t> id = gguf.get_int(key);
  if (!id) return std::nullopt;
  if (*id < 0 || *id > std::numeric_limits<int32_t>::max())
    file.format(std::string(key) + " = " + std::to_string(*id) + " is not a token id");
  return static_cast<int32_t>(*id);
}

// tokenizer.ggml.token_type: control tokens are special, user-defined ones added (matched
// in text even when special tokens are not parsed); for SentencePiece the unknown token is
// special too (llama.cpp matches it in text and hides it in decode as a control token).
void read_token_types(const FileContext& file, const GgufFile& gguf, bool unknown_is_special,
                      TokenizerSpec& spec) {
  std::optional<std::vector<int64_t>> types = gguf.get_int_array("tokenizer.ggml.token_type");
  if (!types) return;
  if (types->size() != spec.vocab.size())
    file.format("tokenizer.ggml.token_type has " + std::to_string(types->size()) + " entries but " +
                "tokenizer.ggml.tokens has " + std::to_string(spec.vocab.size()));
  for (size_t id = 0; id < types->size(); ++id) {
    const int64_t type = (*types)[id];
    if (type == kControlToken || (unknown_is_special && type == kUnknownToken))
      spec.special_ids.push_back(static_cast<int32_t>(id));
    if (type == kUserDefinedToken) spec.added_ids.push_back(static_cast<int32_t>(id));
  }
}

// model "gpt2": byte-level BPE.
void read_byte_level(const FileContext& file, const GgufFile& gguf, TokenizerSpec& spec) {
  std::optional<std::vector<std::string>> merges = gguf.get_string_array("tokenizer.ggml.merges");
  if (!merges) file.format("metadata key 'tokenizer.ggml.merges' is missing");
  spec.merges.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const std::string& m = (*merges)[i];
    const size_t space = m.find(' ', 1);
    if (space == std::string::npos || space + 1 == m.size() || m.find(' ', space + 1) != std::string::npos)
      file.format("tokenizer.ggml.merges[" + std::to_string(i) +
                  "]: expected two tokens separated by one space, got " + in_quotes(m));
    spec.merges.emplace_back(m.substr(0, space), m.substr(space + 1));
  }
  read_token_types(file, gguf, false, spec);

  const std::optional<std::string> pre = gguf.get_string("tokenizer.ggml.pre");
  spec.pre_tokenizer = pre_tokenizer_of(file, pre);
  const bool llama3 = spec.pre_tokenizer == PreTokenizer::llama3;
  spec.ignore_merges = llama3;

  default_special_tokens(spec);  // <|endoftext|>, when the file names no bos / eos
  if (auto id = token_id_key(file, gguf, "tokenizer.ggml.bos_token_id")) spec.bos_id = id;
  if (auto id = token_id_key(file, gguf, "tokenizer.ggml.eos_token_id")) spec.eos_id = id;
  spec.add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token").value_or(llama3 && spec.bos_id.has_value());
  spec.add_eos = gguf.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
}

// model "llama": SentencePiece, with llama.cpp's defaults (llama_vocab::impl::load):
// unk / bos / eos ids 0 / 1 / 2, add_bos true, add_space_prefix true.
void read_sentencepiece(const FileContext& file, const GgufFile& gguf, TokenizerSpec& spec) {
  spec.model = TokenizerModel::sentencepiece;
  std::optional<std::vector<float>> scores = gguf.get_float_array("tokenizer.ggml.scores");
  if (!scores) file.format("metadata key 'tokenizer.ggml.scores' is missing (SentencePiece merges by score)");
  if (scores->size() != spec.vocab.size())
    file.format("tokenizer.ggml.scores has " + std::to_string(scores->size()) + " entries but " +
                "tokenizer.ggml.tokens has " + std::to_string(spec.vocab.size()));
  spec.sentencepiece.scores = std::move(*scores);
  read_token_types(file, gguf, true, spec);

  const bool space_prefix = gguf.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  spec.sentencepiece.prefix =
      space_prefix ? SentencePieceOptions::Prefix::every_segment : SentencePieceOptions::Prefix::none;
  spec.sentencepiece.strip =
      space_prefix ? SentencePieceOptions::Strip::first_token : SentencePieceOptions::Strip::none;
  // A default id past the vocab stays unset (llama.cpp would fail on it when used).
  auto id_or = [&](const char* key, int32_t fallback) -> std::optional<int32_t> {
    std::optional<int32_t> id = token_id_key(file, gguf, key);
    if (id) return id;
    if (static_cast<size_t>(fallback) < spec.vocab.size()) return fallback;
    return std::nullopt;
  };
  spec.unk_id = id_or("tokenizer.ggml.unknown_token_id", 0);
  spec.bos_id = id_or("tokenizer.ggml.bos_token_id", 1);
  spec.eos_id = id_or("tokenizer.ggml.eos_token_id", 2);
  spec.add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
  spec.add_eos = gguf.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
}

}  // namespace

TokenizerSpec read_gguf_tokenizer(const GgufFile& gguf) {
  const FileContext file{gguf.path().string()};
  std::optional<std::string> model = gguf.get_string("tokenizer.ggml.model");
  if (!model) file.format("metadata key 'tokenizer.ggml.model' is missing (the file has no tokenizer)");
  if (*model != "gpt2" && *model != "llama") {
    file.fail(ErrorCategory::unsupported,
              "tokenizer.ggml.model " + in_quotes(*model) +
                  " is not supported; Kestrel reads byte-level BPE ('gpt2') and SentencePiece ('llama')");
  }

  TokenizerSpec spec;
  std::optional<std::vector<std::string>> tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) file.format("metadata key 'tokenizer.ggml.tokens' is missing");
  spec.vocab = std::move(*tokens);
  if (*model == "gpt2") {
    read_byte_level(file, gguf, spec);
  } else {
    read_sentencepiece(file, gguf, spec);
  }
  return spec;
}

}  // namespace kestrel::tokenizer

namespace kestrel {

Tokenizer Tokenizer::from_gguf_file(const std::filesystem::path& path) {
  GgufFile file(path);
  return from_spec(tokenizer::read_gguf_tokenizer(file), path.string());
}

}  // namespace kestrel
