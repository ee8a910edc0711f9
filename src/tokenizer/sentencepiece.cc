#include "tokenizer/sentencepiece.h"

#include <algorithm>
#include <queue>

#include "kestrel/error.h"
#include "tokenizer/byte_level.h"

namespace kestrel::tokenizer {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

std::string byte_piece(uint8_t b) { return {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'}; }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The length of the character at the start of `text`: 1 to 4 for a well-formed one, else 1.
// llama.cpp takes the length a lead byte announces (unicode_len_utf8) even when the bytes
// after it do not continue it, so "\xfe▁" is one symbol of four bytes whose "▁" comes out
// as bytes; one byte per symbol keeps decode(encode(s)) == s. Valid UTF-8 splits the same.
size_t symbol_length(std::string_view text) { return std::max<size_t>(1, utf8_char_length(text)); }

}  // namespace

std::string escape_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  for (char c : text) {
    if (c == ' ') {
      out.append(kMetaspace);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

int byte_of_piece(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return -1;
  const int hi = hex_digit(piece[3]);
  const int lo = hex_digit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string piece_bytes(std::string_view piece) {
  if (const int b = byte_of_piece(piece); b >= 0) return std::string(1, static_cast<char>(b));
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kMetaspace.size(), kMetaspace) == 0) {
      out.push_back(' ');
      i += kMetaspace.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

SentencePieceEncoder::SentencePieceEncoder(const TokenMap& ids, std::vector<float> scores,
                                           const BytePairEncoder* ranked,
                                           std::optional<int32_t> unk_id)
    : ids_(ids), scores_(std::move(scores)), ranked_(ranked), unk_id_(unk_id) {
  for (int b = 0; b < 256; ++b) byte_ids_[b] = find(byte_piece(static_cast<uint8_t>(b))).value_or(-1);
}

std::optional<int32_t> SentencePieceEncoder::find(std::string_view piece) const {
  auto it = ids_.find(piece);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

void SentencePieceEncoder::unencodable(std::string_view text, size_t offset) {
  const std::string piece = byte_piece(static_cast<uint8_t>(text[offset]));
  throw Error(ErrorCategory::invalid_argument,
              "encode: byte 0x" + piece.substr(3, 2) + " has no token in this vocabulary (no piece " +
                  "holds it, there is no byte piece " + piece + " and no unknown token); it cannot " +
                  "be encoded");
}

void SentencePieceEncoder::encode(std::string_view escaped, std::vector<int32_t>& out) const {
  if (escaped.empty()) return;
  if (scores_.empty()) {
    encode_ranked(escaped, out);
  } else {
    encode_scored(escaped, out);
  }
}

// llama.cpp's llm_tokenizer_spm_session: symbols are UTF-8 characters; repeatedly join the
// adjacent pair whose joined text is a token of the highest score (leftmost on ties);
// a final symbol that is not a token is spelled with byte tokens.
void SentencePieceEncoder::encode_scored(std::string_view text, std::vector<int32_t>& out) const {
  struct Symbol {
    uint32_t start;
    uint32_t size;  // 0 once merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  std::vector<Symbol> symbols;
  for (size_t at = 0; at < text.size();) {
    const size_t size = symbol_length(text.substr(at));
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({static_cast<uint32_t>(at), static_cast<uint32_t>(size), index - 1, index + 1});
    at += size;
  }
  symbols.back().next = -1;

  // A candidate goes stale when either symbol grows; `size` (of the pair when pushed)
  // detects that, as in llama.cpp.
  struct Bigram {
    float score;
    int32_t left;
    int32_t right;
    uint32_t size;
    bool operator<(const Bigram& o) const {  // the top of the queue: highest score, leftmost
      return score < o.score || (score == o.score && left > o.left);
    }
  };
  std::priority_queue<Bigram> queue;
  auto try_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t size = symbols[left].size + symbols[right].size;
    if (std::optional<int32_t> id = find(text.substr(symbols[left].start, size))) {
      queue.push({scores_[*id], left, right, size});
    }
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_pair(i - 1, i);

  while (!queue.empty()) {
    const Bigram top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != top.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    try_pair(left.prev, top.left);
    try_pair(top.left, left.next);
  }

  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (std::optional<int32_t> id = find(text.substr(s.start, s.size))) {
      out.push_back(*id);
      continue;
    }
    // llama.cpp's byte_to_token: "<0xXX>", else the byte as a one-character token. Where
    // it finds neither it throws; Kestrel takes the unknown token when there is one.
    for (size_t j = s.start; j < s.start + s.size; ++j) {
      const auto b = static_cast<uint8_t>(text[j]);
      if (byte_ids_[b] >= 0) {
        out.push_back(byte_ids_[b]);
      } else if (std::optional<int32_t> id = find(text.substr(j, 1))) {
        out.push_back(*id);
      } else if (unk_id_) {
        out.push_back(*unk_id_);
      } else {
        unencodable(text, j);
      }
    }
  }
}

// Hugging Face's BPE::merge_word with byte_fallback and fuse_unk: each character is its
// token, else its bytes' <0xXX> tokens when all exist, else the unknown token (a run of
// unknown characters is one unknown token, placed when the run ends, as HF does even when
// byte tokens came in between); then the merges by rank.
void SentencePieceEncoder::encode_ranked(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<int32_t> symbols;
  symbols.reserve(text.size());
  bool unknown_open = false;
  for (size_t at = 0; at < text.size();) {
    const size_t size = symbol_length(text.substr(at));
    const std::string_view c = text.substr(at, size);
    if (std::optional<int32_t> id = find(c)) {
      if (unknown_open) symbols.push_back(*unk_id_);
      unknown_open = false;
      symbols.push_back(*id);
    } else if (std::all_of(c.begin(), c.end(), [&](char b) { return byte_ids_[static_cast<uint8_t>(b)] >= 0; })) {
      for (char b : c) symbols.push_back(byte_ids_[static_cast<uint8_t>(b)]);
    } else if (unk_id_) {
      unknown_open = true;
    } else {
      unencodable(text, at);  // HF drops the character silently; Kestrel does not
    }
    at += size;
  }
  if (unknown_open) symbols.push_back(*unk_id_);
  ranked_->merge(symbols, out);
}

}  // namespace kestrel::tokenizer
