// decoding/grammar.h: GBNF grammars (llama.cpp's syntax) and a pushdown matcher over UTF-8.
//
// Syntax (as llama.cpp's grammars/README.md writes it):
//   name ::= alternatives          one rule; `root` is the start symbol; names are
//                                  [A-Za-z0-9_-]+; a rule ends at the end of its line,
//                                  except inside parentheses or right after `|`
//   a b                            sequence;   a | b   alternatives;   ( ... ) grouping
//   x*  x+  x?  x{m}  x{m,}  x{m,n}  x{,n}      repetitions
//   "text"                         a literal, escapes \n \r \t \\ \" \' \[ \] \xHH \uHHHH \UHHHHHHHH
//   [a-z0-9_]  [^"\\]              a character class (code points), negated with ^
//   .                              any character
//   # ...                          a comment to the end of the line
// Parse errors are Error(invalid_argument) "grammar: line L, column C: expected ...";
// a reference to an undefined rule names it, and so does left recursion (a rule that can
// reach itself before consuming a character), which is refused as llama.cpp refuses it.
//
// Matching works on code points decoded from the bytes of tokens, so a token may end in
// the middle of a UTF-8 character: the matcher keeps the partial character and allows the
// token only if some completion of it could match. A token whose bytes are not valid UTF-8
// (as far as they go) is refused.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel {

class Tokenizer;

namespace grammar {

// A set of code points: sorted, disjoint, inclusive ranges; `negated` inverts it.
struct CharClass {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  bool negated = false;
  bool matches(uint32_t cp) const;
  // Whether some code point in [lo, hi] matches.
  bool intersects(uint32_t lo, uint32_t hi) const;
};

// The compiled grammar: every alternative of every rule is a run of elements in one array,
// closed by an `end` element, so that a matcher position is a single index.
struct Element {
  enum Kind : uint8_t { end, chr, rule } kind = end;
  uint32_t value = 0;  // chr: index into classes; rule: index into rules
};

class Grammar {
 public:
  // Throws Error(invalid_argument) as described above.
  static Grammar parse(std::string_view text);

  const std::vector<Element>& elements() const { return elements_; }
  const std::vector<CharClass>& classes() const { return classes_; }
  // rules()[r]: the element index where each of rule r's alternatives starts.
  const std::vector<std::vector<uint32_t>>& rules() const { return rules_; }
  const std::vector<std::string>& rule_names() const { return names_; }
  uint32_t root() const { return root_; }

 private:
  friend class Parser;
  std::vector<Element> elements_;
  std::vector<CharClass> classes_;
  std::vector<std::vector<uint32_t>> rules_;
  std::vector<std::string> names_;
  uint32_t root_ = 0;
};

// Where a match stands: the set of pushdown stacks (each a list of element indices whose
// last one is the next character element to match; an empty stack means the grammar has
// been matched completely) and the bytes of a character not yet complete.
struct MatchState {
  std::vector<std::vector<uint32_t>> stacks;  // sorted, no duplicates
  uint32_t partial = 0;        // code point bits gathered so far
  uint8_t partial_left = 0;    // continuation bytes still expected (0: none pending)
  uint32_t partial_lo = 0, partial_hi = 0;  // the code points the partial character may become

  bool dead() const { return stacks.empty(); }
};

class Matcher {
 public:
  // At most this many parses at once; more throws Error(unsupported) (a grammar so
  // ambiguous that matching would take unbounded time).
  static constexpr size_t kMaxStacks = 4096;

  explicit Matcher(std::shared_ptr<const Grammar> grammar);

  const MatchState& state() const { return state_; }
  // Whether the bytes can follow what has been accepted (without accepting them).
  bool allows(std::string_view bytes) const;
  // Accepts the bytes; returns false (and leaves the state unchanged) if they cannot follow.
  bool accept(std::string_view bytes);
  // The text accepted so far is a complete sentence of the grammar (EOS may come now).
  bool can_end() const;
  // Nothing but the end can come: the grammar is complete and admits no more characters.
  bool must_end() const;
  // Whether `text` is a whole sentence of the grammar.
  static bool matches(std::shared_ptr<const Grammar> grammar, std::string_view text);

  // Low level, for the vocabulary walk: the state after one byte (dead() if refused).
  void step(const MatchState& from, uint8_t byte, MatchState& to) const;

 private:
  void expand(std::vector<uint32_t>& stack, std::vector<std::vector<uint32_t>>& out, int depth = 0) const;
  static constexpr int kMaxExpansionDepth = 2000;
  void accept_code_point(const MatchState& from, uint32_t cp, MatchState& to) const;
  bool partial_possible(const MatchState& s) const;
  std::shared_ptr<const Grammar> grammar_;
  MatchState state_;
};

// The vocabulary as a prefix tree of token bytes, so that a full mask matches each shared
// prefix once. Special (control) tokens and tokens without bytes are left out: a grammar
// never allows them (the end-of-sequence token is the decoder's business).
class VocabularyTrie {
 public:
  explicit VocabularyTrie(const Tokenizer& tokenizer);
  // The tokens whose bytes may follow the matcher's state, in increasing order.
  void allowed_tokens(const Matcher& matcher, std::vector<int32_t>& out) const;
  size_t nodes() const { return nodes_.size(); }

 private:
  struct Node {
    uint32_t first_child = 0, child_count = 0;  // into edges_
    uint32_t first_token = 0, token_count = 0;  // into tokens_
  };
  struct Edge {
    uint8_t byte;
    uint32_t node;
  };
  std::vector<Node> nodes_;
  std::vector<Edge> edges_;
  std::vector<int32_t> tokens_;
  int32_t max_token_ = 0;
};

// One VocabularyTrie per tokenizer, built on first use and shared while it is in use.
std::shared_ptr<const VocabularyTrie> vocabulary_trie(const Tokenizer& tokenizer);

}  // namespace grammar
}  // namespace kestrel
