// Fuzz target: GBNF grammars and JSON Schemas (decoding/grammar, decoding/json_schema).
// Input: one mode byte, then the grammar (mode bit 0 clear) or JSON Schema (set) text, a
// NUL, and a text to match (at most 256 bytes are used). Bad grammars and schemas must be
// refused with an Error; a schema that converts must give a grammar that parses (unless
// its $refs recurse on the left, which the grammar refuses by name); a grammar that parses
// must match the text byte by byte without fault, and agree with a whole-text match.
#include <string>
#include <string_view>

#include "decoding/grammar.h"
#include "decoding/json_schema.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel;
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t cut = rest.find('\0');
  std::string_view source = rest.substr(0, cut);
  std::string_view text = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);
  if (text.size() > 256) text = text.substr(0, 256);
  std::string gbnf(source);
  if (mode & 1) {
    try {
      gbnf = json_schema_to_grammar(source);
    } catch (const Error&) {
      return 0;
    }
  }
  std::shared_ptr<const grammar::Grammar> g;
  try {
    g = std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(gbnf));
  } catch (const Error& e) {
    if ((mode & 1) && e.message().find("left recursion") == std::string::npos) std::abort();  // converter made bad GBNF
    return 0;
  }
  try {
    grammar::Matcher m(g);
    bool alive = true;
    for (char c : text) {
      if (!m.allows(std::string_view(&c, 1))) {
        alive = false;
        break;
      }
      if (!m.accept(std::string_view(&c, 1))) std::abort();  // allows() and accept() disagree
    }
    const bool whole = grammar::Matcher::matches(g, text);
    if (whole != (alive && m.can_end())) std::abort();  // byte by byte and whole text disagree
    if (m.must_end() && !m.can_end()) std::abort();
  } catch (const Error&) {
    // A grammar too ambiguous to match (more parses than the matcher keeps).
  }
  return 0;
}
