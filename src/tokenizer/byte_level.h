// tokenizer/byte_level.h: GPT-2's reversible byte <-> printable-character mapping
// (bytes_to_unicode), plus the small UTF-8 helpers the tokenizer needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kestrel::tokenizer {

// The byte-level alphabet: each of the 256 byte values maps to one code point
// (printable bytes to themselves, the rest to U+0100 and up), as UTF-8.
const std::string& byte_to_symbol(uint8_t byte);

// Appends the byte-level form of `bytes` to `out`.
void append_byte_level(std::string_view bytes, std::string& out);

// The raw bytes of a byte-level string, or nullopt when it holds a character outside the
// alphabet (then the token is taken as plain text, as Hugging Face's ByteLevel decoder does).
std::optional<std::string> byte_level_to_bytes(std::string_view symbols);

// Length of the well-formed UTF-8 character at the start of `s` (1 to 4), or 0 when the
// bytes there are not one (truncated, overlong, surrogate, above U+10FFFF, stray byte).
size_t utf8_char_length(std::string_view s);

}  // namespace kestrel::tokenizer
