// Python's str operations on UTF-8 text, by code point: case mapping (ASCII, Latin-1,
// Greek and Cyrillic; other scripts are left as they are), strip, split.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel::jinja {

std::string str_upper(std::string_view s);
std::string str_lower(std::string_view s);
std::string str_title(std::string_view s);       // str.title()
std::string str_capitalize(std::string_view s);  // str.capitalize()
// str.strip / lstrip / rstrip; `chars` null: whitespace.
std::string str_strip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split(sep, maxsplit) (sep null: runs of whitespace) and str.rsplit.
std::vector<std::string> str_split(std::string_view s, const std::string* sep, long maxsplit);
std::vector<std::string> str_rsplit(std::string_view s, const std::string* sep, long maxsplit);
std::vector<std::string> str_splitlines(std::string_view s);
bool is_cased_letter(std::string_view cp);
// Appends code point `c` as UTF-8.
void append_utf8(std::string& out, uint32_t c);

}  // namespace kestrel::jinja
