// The Tokenizer: built from a TokenizerSpec (validated here); encode / decode.
#include "kestrel/tokenizer.h"

#include <algorithm>
#include <array>
#include <unordered_map>

#include "kestrel/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/file_fields.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/sentencepiece.h"
#include "tokenizer/token_map.h"
#include "tokenizer/tokenizer_files.h"

namespace kestrel {
namespace {

using tokenizer::in_quotes;

using tokenizer::TokenMap;

// An added token, matched verbatim in the input.
struct AddedToken {
  std::string_view text;
  int32_t id;
  bool special;
};

[[noreturn]] void fail(const tokenizer::SpecOrigin& origin, const std::string& what) {
  throw Error(ErrorCategory::format, origin.source + ": " + what);
}

void check_id(const tokenizer::SpecOrigin& origin, const std::string& field,
              std::optional<int32_t> id, size_t vocab_size) {
  if (id && (*id < 0 || static_cast<size_t>(*id) >= vocab_size)) {
    fail(origin, field + ": token id " + std::to_string(*id) + " is out of range (vocab size " +
                     std::to_string(vocab_size) + ")");
  }
}

}  // namespace

struct Tokenizer::Impl {
  std::vector<std::string> vocab;  // by id, as in the spec
  std::vector<std::string> bytes;  // by id: the raw bytes each token stands for
  std::vector<uint8_t> special;    // by id: 1 for special tokens
  TokenMap ids;                    // vocab string -> lowest id with that string
  // Added tokens by first byte, longest first: leftmost-longest matching as in HF.
  std::array<std::vector<AddedToken>, 256> added_by_first_byte;
  tokenizer::WordSplitter splitter;
  std::optional<tokenizer::BytePairEncoder> bpe;
  std::optional<tokenizer::SentencePieceEncoder> pieces;  // SentencePiece only
  // Bytes whose byte-level token the vocab lacks, when there is no unk token to stand for
  // them: encode() refuses text holding one rather than drop it (see kestrel/tokenizer.h).
  std::array<bool, 256> unencodable{};
  bool any_unencodable = false;
  TokenizerModel model;
  PreTokenizer pre_tokenizer;
  SentencePieceOptions::Prefix prefix;
  SentencePieceOptions::Strip strip;
  std::optional<int32_t> bos_id, eos_id;
  bool add_bos, add_eos, ignore_merges, add_prefix_space;

  Impl(TokenizerSpec&& spec, const tokenizer::SpecOrigin& origin)
      : vocab(std::move(spec.vocab)),
        splitter(spec.pre_tokenizer),
        model(spec.model),
        pre_tokenizer(spec.pre_tokenizer),
        prefix(spec.sentencepiece.prefix),
        strip(spec.sentencepiece.strip),
        bos_id(spec.bos_id),
        eos_id(spec.eos_id),
        add_bos(spec.add_bos),
        add_eos(spec.add_eos),
        ignore_merges(spec.ignore_merges),
        add_prefix_space(spec.add_prefix_space) {
    const size_t n = vocab.size();
    if (n == 0) fail(origin, "vocab is empty");
    if (n > static_cast<size_t>(INT32_MAX)) fail(origin, "vocab has more than 2^31 tokens");
    check_id(origin, "bos", bos_id, n);
    check_id(origin, "eos", eos_id, n);
    check_id(origin, "unk", spec.unk_id, n);
    if (add_bos && !bos_id) fail(origin, "add_bos is set but there is no bos token");
    if (add_eos && !eos_id) fail(origin, "add_eos is set but there is no eos token");

    ids.reserve(n);
    for (size_t id = 0; id < n; ++id) ids.emplace(vocab[id], static_cast<int32_t>(id));

    std::vector<tokenizer::MergeRule> merges;
    merges.reserve(spec.merges.size());
    for (size_t i = 0; i < spec.merges.size(); ++i) {
      const auto& [left, right] = spec.merges[i];
      auto find = [&](const std::string& token) {
        auto it = ids.find(token);
        if (it == ids.end())
          fail(origin, origin.merge_label(i) + ": unknown token " + in_quotes(token));
        return it->second;
      };
      int32_t left_id = find(left);
      int32_t right_id = find(right);
      auto merged = ids.find(left + right);
      if (merged == ids.end()) {
        fail(origin, origin.merge_label(i) + ": merged token " + in_quotes(left + right) +
                         " is not in the vocab");
      }
      merges.push_back({left_id, right_id, merged->second});
    }
    spec.merges.clear();
    spec.merges.shrink_to_fit();

    const bool sentencepiece = model == TokenizerModel::sentencepiece;
    std::array<int32_t, 256> byte_ids;
    byte_ids.fill(-1);  // SentencePiece starts from characters, not from byte-level symbols
    for (int b = 0; b < 256 && !sentencepiece; ++b) {
      auto it = ids.find(tokenizer::byte_to_symbol(static_cast<uint8_t>(b)));
      byte_ids[b] = it == ids.end() ? -1 : it->second;
      unencodable[b] = byte_ids[b] < 0 && !spec.unk_id;
      any_unencodable = any_unencodable || unencodable[b];
    }
    bpe.emplace(byte_ids, merges, spec.unk_id);
    if (sentencepiece) {
      std::vector<float>& scores = spec.sentencepiece.scores;
      if (!scores.empty() && scores.size() != n) {
        fail(origin, "scores: " + std::to_string(scores.size()) + " entries for a vocab of " +
                         std::to_string(n) + " tokens");
      }
      pieces.emplace(ids, std::move(scores), &*bpe, spec.unk_id);
    }

    special.assign(n, 0);
    std::vector<uint8_t> plain_text(n, 0);
    auto add = [&](const char* field, int32_t id, bool is_special) {
      check_id(origin, field, id, n);
      plain_text[id] = 1;
      if (is_special) special[id] = 1;
      if (vocab[id].empty()) return;
      added_by_first_byte[static_cast<uint8_t>(vocab[id][0])].push_back(
          {vocab[id], id, is_special});
    };
    for (int32_t id : spec.special_ids) add("special_ids", id, true);
    for (int32_t id : spec.added_ids) add("added_ids", id, false);
    for (auto& bucket : added_by_first_byte) {
      std::stable_sort(bucket.begin(), bucket.end(), [](const AddedToken& a, const AddedToken& b) {
        return a.text.size() > b.text.size();
      });
    }

    bytes.resize(n);
    for (size_t id = 0; id < n; ++id) {
      std::optional<std::string> raw;
      if (plain_text[id]) {
        raw = vocab[id];
      } else if (sentencepiece) {
        raw = tokenizer::piece_bytes(vocab[id]);
      } else {
        raw = tokenizer::byte_level_to_bytes(vocab[id]);
      }
      bytes[id] = raw ? std::move(*raw) : vocab[id];
    }
  }

  // A SentencePiece segment: "▁" prefix by the file's rule, spaces escaped, then pieces.
  // `offset` is the segment's offset in the text passed to encode().
  void encode_pieces(std::string_view segment, size_t offset, std::vector<int32_t>& out) const {
    using Prefix = SentencePieceOptions::Prefix;
    std::string text = tokenizer::escape_spaces(segment);
    const bool starts_with_space = std::string_view(text).starts_with(tokenizer::kMetaspace);
    const bool add = prefix == Prefix::every_segment ||
                     (prefix == Prefix::every_unless_space && !starts_with_space) ||
                     (prefix == Prefix::first_unless_space && !starts_with_space && offset == 0);
    if (add) text.insert(0, tokenizer::kMetaspace);
    pieces->encode(text, out);
  }

  // The added token starting at text[pos], if any (the longest one).
  const AddedToken* added_at(std::string_view text, size_t pos, bool parse_special) const {
    for (const AddedToken& t : added_by_first_byte[static_cast<uint8_t>(text[pos])]) {
      if (t.special && !parse_special) continue;
      if (text.compare(pos, t.text.size(), t.text) == 0) return &t;
    }
    return nullptr;
  }

  // Throws Error(invalid_argument) naming the first byte of `segment` that has no token;
  // `offset` is the segment's offset in the text passed to encode().
  void check_encodable(std::string_view segment, size_t offset) const {
    if (!any_unencodable) return;
    if (add_prefix_space && segment[0] != ' ' && unencodable[' ']) {
      throw Error(ErrorCategory::invalid_argument,
                  "encode: the vocabulary has no token for the space add_prefix_space inserts");
    }
    for (size_t i = 0; i < segment.size(); ++i) {
      const auto b = static_cast<uint8_t>(segment[i]);
      if (!unencodable[b]) continue;
      static constexpr char kHex[] = "0123456789abcdef";
      const std::string hex = {'0', 'x', kHex[b >> 4], kHex[b & 15]};
      throw Error(ErrorCategory::invalid_argument,
                  "encode: byte " + hex + " at offset " + std::to_string(offset + i) +
                      " has no token in this vocabulary (its byte-level token is missing and "
                      "there is no unknown token); it cannot be encoded");
    }
  }

  // Text between added tokens: pre-tokenize, then BPE each word.
  void encode_segment(std::string_view segment, size_t offset, std::vector<int32_t>& out) const {
    if (segment.empty()) return;
    if (pieces) {
      encode_pieces(segment, offset, out);
      return;
    }
    check_encodable(segment, offset);
    std::string prefixed;
    if (add_prefix_space && segment[0] != ' ') {
      prefixed.reserve(segment.size() + 1);
      prefixed.append(1, ' ').append(segment);
      segment = prefixed;
    }
    std::vector<std::string_view> words;
    splitter.split(segment, words);
    std::string symbols;
    for (std::string_view word : words) {
      if (ignore_merges) {
        symbols.clear();
        tokenizer::append_byte_level(word, symbols);
        if (auto it = ids.find(symbols); it != ids.end()) {
          out.push_back(it->second);
          continue;
        }
      }
      bpe->encode(word, out);
    }
  }

  void check_range(int32_t id, const char* what) const {
    if (id < 0 || static_cast<size_t>(id) >= vocab.size()) {
      throw Error(ErrorCategory::invalid_argument,
                  std::string(what) + ": token id " + std::to_string(id) +
                      " is out of range (vocab size " + std::to_string(vocab.size()) + ")");
    }
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_spec(TokenizerSpec spec, const std::string& source) {
  tokenizer::SpecOrigin origin;
  origin.source = source;
  return Tokenizer(std::make_unique<Impl>(std::move(spec), origin));
}

Tokenizer Tokenizer::from_json_file(const std::filesystem::path& path) {
  tokenizer::LoadedSpec loaded = tokenizer::read_tokenizer_json(path);
  return Tokenizer(std::make_unique<Impl>(std::move(loaded.spec), loaded.origin));
}

Tokenizer Tokenizer::from_vocab_merges(const std::filesystem::path& vocab_json,
                                       const std::filesystem::path& merges_txt) {
  tokenizer::LoadedSpec loaded = tokenizer::read_vocab_merges(vocab_json, merges_txt);
  return Tokenizer(std::make_unique<Impl>(std::move(loaded.spec), loaded.origin));
}

Tokenizer Tokenizer::from_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(dir / "tokenizer.json", ec)) {
    return from_json_file(dir / "tokenizer.json");
  }
  if (std::filesystem::is_regular_file(dir / "vocab.json", ec) &&
      std::filesystem::is_regular_file(dir / "merges.txt", ec)) {
    return from_vocab_merges(dir / "vocab.json", dir / "merges.txt");
  }
  throw Error(ErrorCategory::io, dir.string() +
                                     ": no tokenizer found (neither tokenizer.json nor "
                                     "vocab.json + merges.txt)");
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  const Impl& t = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (t.add_bos) out.push_back(*t.bos_id);
  size_t segment_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const AddedToken* added = t.added_at(text, pos, parse_special);
    if (added == nullptr) {
      ++pos;
      continue;
    }
    t.encode_segment(text.substr(segment_start, pos - segment_start), segment_start, out);
    out.push_back(added->id);
    pos += added->text.size();
    segment_start = pos;
  }
  t.encode_segment(text.substr(segment_start), segment_start, out);
  if (t.add_eos) out.push_back(*t.eos_id);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  using Strip = SentencePieceOptions::Strip;
  const Impl& t = *impl_;
  const bool sentencepiece = t.model == TokenizerModel::sentencepiece;
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    t.check_range(id, "decode");
    if (skip_special && t.special[id]) continue;
    std::string_view piece = t.bytes[id];
    if (sentencepiece && i == 0 && t.strip == Strip::first_token && piece.starts_with(' ')) {
      piece.remove_prefix(1);
    }
    out += piece;
  }
  if (sentencepiece && t.strip == Strip::text && out.starts_with(' ')) out.erase(0, 1);
  return out;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  impl_->check_range(id, "token_bytes");
  return impl_->bytes[id];
}

const std::string& Tokenizer::token_text(int32_t id) const {
  impl_->check_range(id, "token_text");
  return impl_->vocab[id];
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->vocab.size()); }

std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  auto it = impl_->ids.find(token_text);
  if (it == impl_->ids.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id];
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos_id; }
TokenizerModel Tokenizer::model() const { return impl_->model; }
PreTokenizer Tokenizer::pre_tokenizer() const { return impl_->pre_tokenizer; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }

}  // namespace kestrel
