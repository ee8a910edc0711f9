// Jinja source to tokens, with jinja2's whitespace rules as transformers configures them
// (trim_blocks, lstrip_blocks): raw text, {{ }}, {% %} (comments dropped), the '-' and
// '+' modifiers, {% raw %}, and the tokens of the expressions inside the tags.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kestrel::jinja {

enum class Tok { text, var_begin, var_end, block_begin, block_end, name, string, integer, floating, op, eof };

struct Token {
  Tok type;
  std::string text;  // the data, name, operator, or the string literal's value (escapes resolved)
  int line;
};

// Throws Error(invalid_argument) naming the line for an unterminated tag, comment or
// string, an unknown character or unbalanced brackets.
std::vector<Token> tokenize(std::string_view source);

}  // namespace kestrel::jinja
