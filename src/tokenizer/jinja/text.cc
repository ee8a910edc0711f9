// Python str semantics over UTF-8 (see text.h).
#include "tokenizer/jinja/text.h"

#include <algorithm>

#include "tokenizer/jinja/value.h"

namespace kestrel::jinja {
namespace {

uint32_t decode(std::string_view cp) {
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(cp[i])); };
  if (cp.size() == 1) return b(0);
  if (cp.size() == 2) return ((b(0) & 0x1f) << 6) | (b(1) & 0x3f);
  if (cp.size() == 3) return ((b(0) & 0x0f) << 12) | ((b(1) & 0x3f) << 6) | (b(2) & 0x3f);
  return ((b(0) & 0x07) << 18) | ((b(1) & 0x3f) << 12) | ((b(2) & 0x3f) << 6) | (b(3) & 0x3f);
}


bool is_lower(uint32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 0xdf && c <= 0xff && c != 0xf7) || (c >= 0x3b1 && c <= 0x3c9) ||
         (c >= 0x430 && c <= 0x45f);
}
bool is_upper(uint32_t c) {
  return (c >= 'A' && c <= 'Z') || (c >= 0xc0 && c <= 0xde && c != 0xd7) || (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) ||
         (c >= 0x400 && c <= 0x42f);
}

uint32_t to_upper(uint32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c >= 0xe0 && c <= 0xfe && c != 0xf7) return c - 32;
  if (c == 0xff) return 0x178;
  if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) return c - 32;
  if (c == 0x3c2) return 0x3a3;
  if (c >= 0x430 && c <= 0x44f) return c - 32;
  if (c >= 0x450 && c <= 0x45f) return c - 80;
  return c;
}

uint32_t to_lower(uint32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xc0 && c <= 0xde && c != 0xd7) return c + 32;
  if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;
  if (c >= 0x410 && c <= 0x42f) return c + 32;
  if (c >= 0x400 && c <= 0x40f) return c + 80;
  return c;
}

// ß upper-cases to "SS" in Python; everything else here maps one to one.
void append_upper(std::string& out, uint32_t c) {
  if (c == 0xdf) {
    out += "SS";
  } else {
    append_utf8(out, to_upper(c));
  }
}

bool in_chars(std::string_view cp, const std::string* chars) {
  if (!chars) {
    size_t w = 0;
    return is_space_at(cp, 0, &w);
  }
  for (std::string_view c : code_points(*chars))
    if (c == cp) return true;
  return false;
}

}  // namespace

bool is_cased_letter(std::string_view cp) {
  const uint32_t c = decode(cp);
  return is_lower(c) || is_upper(c);
}

std::string str_upper(std::string_view s) {
  std::string out;
  for (std::string_view cp : code_points(s)) append_upper(out, decode(cp));
  return out;
}

std::string str_lower(std::string_view s) {
  std::string out;
  for (std::string_view cp : code_points(s)) append_utf8(out, to_lower(decode(cp)));
  return out;
}

std::string str_title(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (std::string_view cp : code_points(s)) {
    const uint32_t c = decode(cp);
    const bool cased = is_lower(c) || is_upper(c);
    if (cased && !previous_cased) {
      append_upper(out, c);
    } else {
      append_utf8(out, to_lower(c));
    }
    previous_cased = cased;
  }
  return out;
}

std::string str_capitalize(std::string_view s) {
  std::string out;
  bool first = true;
  for (std::string_view cp : code_points(s)) {
    if (first) {
      append_upper(out, decode(cp));
    } else {
      append_utf8(out, to_lower(decode(cp)));
    }
    first = false;
  }
  return out;
}

std::string str_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  const std::vector<std::string_view> cps = code_points(s);
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && in_chars(cps[b], chars)) ++b;
  if (right)
    while (e > b && in_chars(cps[e - 1], chars)) --e;
  std::string out;
  for (size_t k = b; k < e; ++k) out += cps[k];
  return out;
}

std::vector<std::string> str_split(std::string_view s, const std::string* sep, long maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    size_t start = 0;
    while (maxsplit < 0 || static_cast<long>(out.size()) < maxsplit) {
      const size_t at = s.find(*sep, start);
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    out.emplace_back(s.substr(start));
    return out;
  }
  const std::vector<std::string_view> cps = code_points(s);
  size_t k = 0;
  while (true) {
    while (k < cps.size() && in_chars(cps[k], nullptr)) ++k;
    if (k == cps.size()) break;
    std::string word;
    if (maxsplit >= 0 && static_cast<long>(out.size()) == maxsplit) {
      for (; k < cps.size(); ++k) word += cps[k];
      out.push_back(str_strip(word, nullptr, false, true));
      break;
    }
    while (k < cps.size() && !in_chars(cps[k], nullptr)) word += cps[k++];
    out.push_back(std::move(word));
  }
  return out;
}

std::vector<std::string> str_rsplit(std::string_view s, const std::string* sep, long maxsplit) {
  if (maxsplit < 0) return str_split(s, sep, maxsplit);
  std::vector<std::string> out;
  if (sep) {
    size_t end = s.size();
    while (static_cast<long>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t at = s.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    out.emplace_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
  }
  const std::vector<std::string_view> cps = code_points(s);
  size_t k = cps.size();
  while (true) {
    while (k > 0 && in_chars(cps[k - 1], nullptr)) --k;
    if (k == 0) break;
    if (static_cast<long>(out.size()) == maxsplit) {
      std::string rest;
      for (size_t j = 0; j < k; ++j) rest += cps[j];
      out.push_back(str_strip(rest, nullptr, true, false));
      break;
    }
    size_t b = k;
    while (b > 0 && !in_chars(cps[b - 1], nullptr)) --b;
    std::string word;
    for (size_t j = b; j < k; ++j) word += cps[j];
    out.push_back(std::move(word));
    k = b;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> str_splitlines(std::string_view s) {
  std::vector<std::string> out;
  std::string line;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' || s[i] == '\r') {
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      out.push_back(std::move(line));
      line.clear();
    } else {
      line += s[i];
    }
  }
  if (!line.empty()) out.push_back(std::move(line));
  return out;
}

void append_utf8(std::string& out, uint32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xc0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xe0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  }
}

}  // namespace kestrel::jinja
