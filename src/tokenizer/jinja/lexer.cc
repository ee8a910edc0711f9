// The lexer follows jinja2's (jinja2/lexer.py) rule by rule; comments name the rule.
#include "tokenizer/jinja/lexer.h"

#include <cstring>

#include "kestrel/error.h"
#include "tokenizer/jinja/text.h"
#include "tokenizer/jinja/value.h"

namespace kestrel::jinja {
namespace {

[[noreturn]] void syntax_error(int line, const std::string& what) {
  throw Error(ErrorCategory::invalid_argument, "syntax error at line " + std::to_string(line) + ": " + what);
}

// jinja2's newline_re: \r\n, \r or \n (other Unicode line breaks are ordinary text).
size_t line_break_at(std::string_view s, size_t i) {
  if (s[i] == '\r') return i + 1 < s.size() && s[i + 1] == '\n' ? 2 : 1;
  return s[i] == '\n' ? 1 : 0;
}

// jinja2 splits the source at newline_re and joins with "\n": every line break becomes
// "\n" and one trailing line break goes (keep_trailing_newline is off).
std::string normalize_newlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool ends_with_break = false;
  for (size_t i = 0; i < s.size();) {
    if (const size_t n = line_break_at(s, i)) {
      out += '\n';
      i += n;
      ends_with_break = true;
    } else {
      out += s[i++];
      ends_with_break = false;
    }
  }
  if (ends_with_break) out.pop_back();
  return out;
}

size_t space_width(std::string_view s, size_t i) {
  size_t width = 0;
  return is_space_at(s, i, &width) ? width : 0;
}

std::string_view rstrip(std::string_view s) {
  // Python's str.rstrip(): scan forward, remembering the end of the last non-space.
  size_t end = 0;
  for (size_t i = 0; i < s.size();) {
    if (const size_t w = space_width(s, i)) {
      i += w;
    } else {
      ++i;
      while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xc0) == 0x80) ++i;
      end = i;
    }
  }
  return s.substr(0, end);
}

size_t skip_spaces(std::string_view s, size_t i) {
  while (i < s.size())
    if (const size_t w = space_width(s, i)) i += w; else break;
  return i;
}

bool all_spaces(std::string_view s) { return skip_spaces(s, 0) == s.size(); }

int count_newlines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The body of a string literal decoded as Python's "unicode-escape" codec does.
std::string unescape(std::string_view s, int line) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    switch (c) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x':
      case 'u':
      case 'U': {
        const size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (size_t k = 0; k < digits; ++k) {
          const int h = i + 1 + k < s.size() ? hex_value(s[i + 1 + k]) : -1;
          if (h < 0) syntax_error(line, std::string("truncated \\") + c + " escape in a string");
          cp = cp * 16 + static_cast<uint32_t>(h);
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) syntax_error(line, "invalid escape in a string");
        append_utf8(out, cp);
        i += digits;
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          uint32_t cp = static_cast<uint32_t>(c - '0');
          for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k)
            cp = cp * 8 + static_cast<uint32_t>(s[++i] - '0');
          append_utf8(out, cp);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < src_.size()) {
      const size_t at = next_tag(pos_);
      if (at == std::string::npos) {
        emit_text(std::string_view(src_).substr(pos_));
        break;
      }
      const char kind = src_[at + 1];
      const char sign = at + 2 < src_.size() && (src_[at + 2] == '-' || src_[at + 2] == '+') ? src_[at + 2] : 0;
      std::string_view text = std::string_view(src_).substr(pos_, at - pos_);
      const int text_lines = count_newlines(text);
      if (sign == '-') {
        text = rstrip(text);
      } else if (sign != '+' && kind != '{') {  // lstrip_blocks: block and comment tags only
        const size_t line_start = text.rfind('\n') + 1;  // npos + 1 == 0
        if ((line_start > 0 || line_starting) && all_spaces(text.substr(line_start)))
          text = text.substr(0, line_start);
      }
      emit_text(text);
      line_ += text_lines;
      pos_ = at + 2 + (sign ? 1 : 0);
      if (kind == '#') {
        line_starting = comment();
      } else if (kind == '%' && raw_begin()) {
        line_starting = raw_body();
      } else {
        line_starting = tag(kind == '%');
      }
    }
    tokens_.push_back({Tok::eof, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t next_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  void emit_text(std::string_view text) {
    if (!text.empty()) tokens_.push_back({Tok::text, std::string(text), line_});
  }

  // After "{#": up to the first "#}" (with its own modifier). Returns whether the
  // consumed text ends with a newline (jinja2's line_starting).
  bool comment() {
    const size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) syntax_error(line_, "missing end of comment tag");
    const bool modified = end > pos_ && (src_[end - 1] == '-' || src_[end - 1] == '+');
    const char sign = modified ? src_[end - 1] : 0;
    size_t after = end + 2;
    if (sign == '-') {
      after = skip_spaces(src_, after);
    } else if (sign == 0 && after < src_.size() && src_[after] == '\n') {
      ++after;  // trim_blocks
    }
    line_ += count_newlines(std::string_view(src_).substr(pos_, after - pos_));
    pos_ = after;
    return after > 0 && src_[after - 1] == '\n';
  }

  // "{% raw %}" (after the "{%" and its modifier): consumes it when it is one.
  bool raw_begin() {
    size_t i = skip_spaces(src_, pos_);
    if (src_.compare(i, 3, "raw") != 0) return false;
    i = skip_spaces(src_, i + 3);
    if (src_.compare(i, 3, "-%}") == 0) {
      i = skip_spaces(src_, i + 3);
    } else if (src_.compare(i, 2, "%}") == 0) {
      i += 2;
    } else {
      return false;
    }
    line_ += count_newlines(std::string_view(src_).substr(pos_, i - pos_));
    pos_ = i;
    return true;
  }

  bool raw_body() {
    for (size_t at = src_.find("{%", pos_); at != std::string::npos; at = src_.find("{%", at + 1)) {
      size_t i = at + 2;
      const char sign = i < src_.size() && (src_[i] == '-' || src_[i] == '+') ? src_[i] : 0;
      if (sign) ++i;
      i = skip_spaces(src_, i);
      if (src_.compare(i, 6, "endraw") != 0) continue;
      i = skip_spaces(src_, i + 6);
      size_t after;
      if (src_.compare(i, 3, "+%}") == 0) {
        after = i + 3;
      } else if (src_.compare(i, 3, "-%}") == 0) {
        after = skip_spaces(src_, i + 3);
      } else if (src_.compare(i, 2, "%}") == 0) {
        after = i + 2 + (i + 2 < src_.size() && src_[i + 2] == '\n' ? 1 : 0);
      } else {
        continue;
      }
      std::string_view text = std::string_view(src_).substr(pos_, at - pos_);
      if (sign == '-') {
        text = rstrip(text);
      } else if (sign != '+') {
        const size_t line_start = text.rfind('\n') + 1;
        if (line_start > 0 && all_spaces(text.substr(line_start))) text = text.substr(0, line_start);
      }
      emit_text(text);
      line_ += count_newlines(std::string_view(src_).substr(pos_, after - pos_));
      pos_ = after;
      return src_[after - 1] == '\n';
    }
    syntax_error(line_, "missing end of raw directive");
  }

  // The tokens of a {{ }} or {% %} tag up to its end marker.
  bool tag(bool block) {
    tokens_.push_back({block ? Tok::block_begin : Tok::var_begin, "", line_});
    std::vector<char> balance;
    const char* end = block ? "%}" : "}}";
    while (true) {
      if (pos_ >= src_.size())
        syntax_error(line_, block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'");
      if (balance.empty()) {
        size_t after = std::string::npos;
        if (block && src_.compare(pos_, 3, "+%}") == 0) {
          after = pos_ + 3;
        } else if (src_[pos_] == '-' && src_.compare(pos_ + 1, 2, end) == 0) {
          after = skip_spaces(src_, pos_ + 3);
        } else if (src_.compare(pos_, 2, end) == 0) {
          after = pos_ + 2;
          if (block && after < src_.size() && src_[after] == '\n') ++after;  // trim_blocks
        }
        if (after != std::string::npos) {
          tokens_.push_back({block ? Tok::block_end : Tok::var_end, "", line_});
          line_ += count_newlines(std::string_view(src_).substr(pos_, after - pos_));
          pos_ = after;
          return src_[after - 1] == '\n';
        }
      }
      if (const size_t w = space_width(src_, pos_)) {
        line_ += src_[pos_] == '\n';
        pos_ += w;
        continue;
      }
      expression_token(balance);
    }
  }

  void expression_token(std::vector<char>& balance) {
    const char c = src_[pos_];
    if (is_digit(c)) return number();
    if (is_name_start(c)) {
      size_t e = pos_;
      while (e < src_.size() && (is_name_start(src_[e]) || is_digit(src_[e]))) ++e;
      tokens_.push_back({Tok::name, src_.substr(pos_, e - pos_), line_});
      pos_ = e;
      return;
    }
    if (c == '\'' || c == '"') return string_literal(c);
    static constexpr const char* kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : kTwo)
      if (src_.compare(pos_, 2, op) == 0) {
        tokens_.push_back({Tok::op, op, line_});
        pos_ += 2;
        return;
      }
    if (std::strchr("+-/*%~[](){}<>=.:|,;", c) == nullptr || c == 0)
      syntax_error(line_, std::string("unexpected char '") + c + "'");
    if (c == '(' || c == '[' || c == '{') {
      balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) syntax_error(line_, std::string("unexpected '") + c + "'");
      if (balance.back() != c)
        syntax_error(line_, std::string("unexpected '") + c + "', expected '" + balance.back() + "'");
      balance.pop_back();
    }
    tokens_.push_back({Tok::op, std::string(1, c), line_});
    ++pos_;
  }

  size_t digits_from(size_t i) const {
    while (i < src_.size() && (is_digit(src_[i]) || (src_[i] == '_' && i + 1 < src_.size() && is_digit(src_[i + 1]))))
      ++i;
    return i;
  }

  void number() {
    size_t e = digits_from(pos_);
    bool is_float = false;
    const bool after_dot = pos_ > 0 && src_[pos_ - 1] == '.';
    if (!after_dot) {
      if (e + 1 < src_.size() && src_[e] == '.' && is_digit(src_[e + 1])) {
        e = digits_from(e + 1);
        is_float = true;
      }
      if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
        size_t k = e + 1;
        if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
        if (k < src_.size() && is_digit(src_[k])) {
          e = digits_from(k);
          is_float = true;
        }
      }
    }
    std::string text;
    for (size_t k = pos_; k < e; ++k)
      if (src_[k] != '_') text += src_[k];
    tokens_.push_back({is_float ? Tok::floating : Tok::integer, text, line_});
    pos_ = e;
  }

  void string_literal(char quote) {
    size_t i = pos_ + 1;
    while (i < src_.size() && src_[i] != quote) i += src_[i] == '\\' ? 2 : 1;
    if (i >= src_.size()) syntax_error(line_, "unterminated string");
    const std::string_view body = std::string_view(src_).substr(pos_ + 1, i - pos_ - 1);
    tokens_.push_back({Tok::string, unescape(body, line_), line_});
    line_ += count_newlines(body);
    pos_ = i + 1;
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) { return Lexer(normalize_newlines(source)).run(); }

}  // namespace kestrel::jinja
