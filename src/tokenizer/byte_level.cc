#include "tokenizer/byte_level.h"

#include <array>

namespace kestrel::tokenizer {
namespace {

// Bytes GPT-2 keeps as themselves: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF.
bool maps_to_itself(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The alphabet's code points stop below U+0144 (256 + 68 remapped bytes).
constexpr uint32_t kAlphabetEnd = 0x144;

struct Alphabet {
  std::array<std::string, 256> symbol;        // byte -> UTF-8 of its code point
  std::array<int16_t, kAlphabetEnd> byte_of;  // code point -> byte, or -1

  Alphabet() {
    byte_of.fill(-1);
    uint32_t next_remapped = 256;
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = maps_to_itself(b) ? static_cast<uint32_t>(b) : next_remapped++;
      append_utf8(cp, symbol[b]);
      byte_of[cp] = static_cast<int16_t>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet instance;
  return instance;
}

}  // namespace

const std::string& byte_to_symbol(uint8_t byte) { return alphabet().symbol[byte]; }

void append_byte_level(std::string_view bytes, std::string& out) {
  const Alphabet& a = alphabet();
  for (char c : bytes) out += a.symbol[static_cast<uint8_t>(c)];
}

std::optional<std::string> byte_level_to_bytes(std::string_view symbols) {
  const Alphabet& a = alphabet();
  std::string out;
  out.reserve(symbols.size());
  size_t i = 0;
  while (i < symbols.size()) {
    size_t len = utf8_char_length(symbols.substr(i));
    if (len == 0 || len > 2) return std::nullopt;  // the alphabet is all 1- or 2-byte UTF-8
    auto b0 = static_cast<uint8_t>(symbols[i]);
    uint32_t cp =
        len == 1 ? b0 : ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(symbols[i + 1]) & 0x3Fu);
    if (cp >= kAlphabetEnd || a.byte_of[cp] < 0) return std::nullopt;
    out.push_back(static_cast<char>(a.byte_of[cp]));
    i += len;
  }
  return out;
}

size_t utf8_char_length(std::string_view s) {
  if (s.empty()) return 0;
  auto b0 = static_cast<uint8_t>(s[0]);
  if (b0 < 0x80) return 1;
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < len) return 0;
  auto b1 = static_cast<uint8_t>(s[1]);
  if (b1 < lo || b1 > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    auto b = static_cast<uint8_t>(s[k]);
    if (b < 0x80 || b > 0xBF) return 0;
  }
  return len;
}

}  // namespace kestrel::tokenizer
