// Tokens to a syntax tree, with jinja2's grammar and operator precedence
// (jinja2/parser.py): statements if / for / set / macro / call / filter / break /
// continue / generation, and expressions from ternaries down to filters and tests.
#pragma once

#include <string_view>

#include "tokenizer/jinja/ast.h"

namespace kestrel::jinja {

// Throws Error(invalid_argument) "syntax error at line N: ..." naming what was expected;
// refuses template inheritance and includes (extends, block, include, import) as
// Error(unsupported): a chat template is one self-contained text.
Body parse(std::string_view source);

}  // namespace kestrel::jinja
