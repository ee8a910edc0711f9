// decoding/grammar_parser.cc: GBNF text (llama.cpp's syntax) to a Grammar: rules, sequences,
// alternatives, groups and repetitions, literals, character classes and rule references,
// with errors naming the line and column. The matcher and the vocabulary trie are in
// grammar.cc.
#include <algorithm>
#include <map>

#include "decoding/grammar.h"
#include "kestrel/error.h"

namespace kestrel::grammar {
class Parser {
 public:
  explicit Parser(std::string_view text) : src_(text) {}

  Grammar run() {
    skip_space(true);
    while (pos_ < src_.size()) {
      parse_rule();
      skip_space(true);
    }
    auto root = ids_.find("root");
    if (root == ids_.end()) throw Error(ErrorCategory::invalid_argument, "grammar: no rule named root (the start symbol)");
    for (size_t r = 0; r < g_.rules_.size(); ++r)
      if (!defined_[r]) {
        const auto [line, column] = line_column(first_use_[r]);
        throw Error(ErrorCategory::invalid_argument, "grammar: rule '" + g_.names_[r] + "' is used (line " +
                                                         std::to_string(line) + ", column " + std::to_string(column) +
                                                         ") but never defined");
      }
    g_.root_ = root->second;
    flatten();
    check_left_recursion();
    return std::move(g_);
  }

 private:
  // A rule while it is parsed: alternatives of sequences of items.
  struct Item {
    bool is_rule = false;
    uint32_t value = 0;  // class or rule index
  };
  using Sequence = std::vector<Item>;
  using Alternatives = std::vector<Sequence>;

  [[noreturn]] void fail(const std::string& what) const { fail_at(pos_, what); }
  [[noreturn]] void fail_at(size_t at, const std::string& what) const {
    auto [line, column] = line_column(at);
    throw Error(ErrorCategory::invalid_argument,
                "grammar: line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + what);
  }
  std::pair<int, int> line_column(size_t at) const {
    int line = 1, column = 1;
    for (size_t i = 0; i < at && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return {line, column};
  }
  std::string found() const {
    if (pos_ >= src_.size()) return "the end of the grammar";
    const char c = src_[pos_];
    if (c == '\n') return "the end of the line";
    return std::string("'") + c + "'";
  }

  static bool word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  }

  // Spaces, tabs, comments; newlines too when `newlines`.
  void skip_space(bool newlines) {
    while (pos_ < src_.size()) {
      const char c = src_[pos_];
      if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < src_.size() && src_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  std::string parse_name() {
    const size_t start = pos_;
    while (pos_ < src_.size() && word_char(src_[pos_])) ++pos_;
    if (pos_ == start) fail("expected a rule name, found " + found());
    return std::string(src_.substr(start, pos_ - start));
  }

  uint32_t rule_id(const std::string& name, size_t at) {
    auto [it, fresh] = ids_.emplace(name, static_cast<uint32_t>(g_.names_.size()));
    if (fresh) {
      g_.names_.push_back(name);
      g_.rules_.emplace_back();
      defined_.push_back(false);
      first_use_.push_back(at);
      bodies_.emplace_back();
    }
    return it->second;
  }

  // A rule for a group or repetition inside `base`, named `base#N`: no GBNF name has a '#',
  // so a rule the text defines later (a JSON Schema property "2" of root gives root-2) can
  // never collide with it.
  uint32_t fresh_rule(const std::string& base) {
    const std::string name = base + "#" + std::to_string(++generated_);
    const uint32_t id = rule_id(name, pos_);
    defined_[id] = true;
    owner_[id] = current_;
    return id;
  }

  void parse_rule() {
    const size_t at = pos_;
    const std::string name = parse_name();
    const uint32_t id = rule_id(name, at);
    if (defined_[id]) fail_at(at, "rule '" + name + "' is defined twice");
    defined_[id] = true;
    skip_space(false);
    if (src_.substr(pos_, 3) != "::=") fail("expected '::=' after rule name '" + name + "', found " + found());
    pos_ += 3;
    skip_space(true);
    current_ = name;
    bodies_[id] = parse_alternatives(false);
    skip_space(false);
    if (pos_ < src_.size() && src_[pos_] != '\n')
      fail("expected the end of the line after rule '" + name + "', found " + found());
  }

  Alternatives parse_alternatives(bool nested) {
    if (nested && ++depth_ > 200) fail("groups are nested more than 200 deep");
    Alternatives alts;
    alts.push_back(parse_sequence(nested));
    while (pos_ < src_.size() && src_[pos_] == '|') {
      ++pos_;
      skip_space(true);
      alts.push_back(parse_sequence(nested));
    }
    if (nested) --depth_;
    return alts;
  }

  Sequence parse_sequence(bool nested) {
    Sequence seq;
    size_t last_start = 0;  // where the last element's items begin in seq
    bool have_last = false;
    for (;;) {
      skip_space(nested);
      if (pos_ >= src_.size()) break;
      const char c = src_[pos_];
      if (c == '"') {
        ++pos_;
        last_start = seq.size();
        while (pos_ < src_.size() && src_[pos_] != '"') {
          const uint32_t cp = parse_char();
          seq.push_back({false, add_class({{{cp, cp}}, false})});
        }
        if (pos_ >= src_.size()) fail("expected '\"' to close the string literal, found the end of the grammar");
        ++pos_;
        have_last = true;
      } else if (c == '[') {
        ++pos_;
        CharClass cls;
        if (pos_ < src_.size() && src_[pos_] == '^') {
          cls.negated = true;
          ++pos_;
        }
        while (pos_ < src_.size() && src_[pos_] != ']') {
          const uint32_t lo = parse_char();
          uint32_t hi = lo;
          if (pos_ + 1 < src_.size() && src_[pos_] == '-' && src_[pos_ + 1] != ']') {
            ++pos_;
            hi = parse_char();
            if (hi < lo) fail("character range ends before it starts");
          }
          cls.ranges.emplace_back(lo, hi);
        }
        if (pos_ >= src_.size()) fail("expected ']' to close the character class, found the end of the grammar");
        ++pos_;
        last_start = seq.size();
        seq.push_back({false, add_class(std::move(cls))});
        have_last = true;
      } else if (c == '.') {
        ++pos_;
        last_start = seq.size();
        seq.push_back({false, add_class({{}, true})});
        have_last = true;
      } else if (word_char(c)) {
        const size_t at = pos_;
        const std::string name = parse_name();
        last_start = seq.size();
        seq.push_back({true, rule_id(name, at)});
        have_last = true;
      } else if (c == '(') {
        ++pos_;
        skip_space(true);
        const std::string owner = current_;
        Alternatives inner = parse_alternatives(true);
        if (pos_ >= src_.size() || src_[pos_] != ')') fail("expected ')' to close the group, found " + found());
        ++pos_;
        const uint32_t id = fresh_rule(owner);
        bodies_[id] = std::move(inner);
        last_start = seq.size();
        seq.push_back({true, id});
        have_last = true;
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (!have_last) fail(std::string("expected an item before '") + c + "'");
        int min = 0, max = -1;
        if (c == '*') {
          ++pos_;
        } else if (c == '+') {
          min = 1;
          ++pos_;
        } else if (c == '?') {
          max = 1;
          ++pos_;
        } else {
          ++pos_;
          skip_space(nested);
          const bool has_min = pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '9';
          if (has_min) min = parse_int();
          skip_space(nested);
          if (pos_ < src_.size() && src_[pos_] == '}') {
            if (!has_min) fail("expected a count in '{}'");
            max = min;
          } else if (pos_ < src_.size() && src_[pos_] == ',') {
            ++pos_;
            skip_space(nested);
            if (pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '9') max = parse_int();
            skip_space(nested);
            if (pos_ >= src_.size() || src_[pos_] != '}') fail("expected '}' to close the repetition, found " + found());
          } else {
            fail("expected ',' or '}' in the repetition, found " + found());
          }
          ++pos_;
          if (max >= 0 && max < min) fail("repetition {" + std::to_string(min) + "," + std::to_string(max) + "} has max < min");
        }
        Sequence item(seq.begin() + static_cast<std::ptrdiff_t>(last_start), seq.end());
        seq.resize(last_start);
        repeat(seq, item, min, max);
        have_last = false;  // x** is an error, as in llama.cpp
      } else {
        break;
      }
    }
    return seq;
  }

  int parse_int() {
    int v = 0;
    const size_t start = pos_;
    while (pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '9') {
      v = v * 10 + (src_[pos_] - '0');
      if (v > 100000) fail_at(start, "repetition count is too large (at most 100000)");
      ++pos_;
    }
    return v;
  }

  // x{min,max} (max < 0: unbounded) as llama.cpp expands it: min copies of x, then either
  // x* (a new rule R ::= x R | ) or max - min nested optionals.
  void repeat(Sequence& seq, const Sequence& item, int min, int max) {
    // A multi-item element (a string literal) becomes one rule so copies stay small.
    Item x = item.size() == 1 ? item[0] : Item{};
    if (item.size() != 1) {
      const uint32_t id = fresh_rule(current_);
      bodies_[id] = {item};
      x = {true, id};
    }
    if (static_cast<int64_t>(elements_) + min + std::max(max, 1) > kMaxElements)
      fail("the grammar is too large (repetitions expand to more than " + std::to_string(kMaxElements) + " items)");
    elements_ += static_cast<size_t>(min) + static_cast<size_t>(std::max(max, 1));
    for (int i = 0; i < min; ++i) seq.push_back(x);
    if (max < 0) {
      const uint32_t star = fresh_rule(current_);
      bodies_[star] = {{x, Item{true, star}}, {}};
      seq.push_back({true, star});
      return;
    }
    if (max == min) return;
    // opt_k ::= x opt_{k-1} | ;  opt_1 ::= x |
    uint32_t inner = 0;
    bool have_inner = false;
    for (int k = 0; k < max - min; ++k) {
      const uint32_t id = fresh_rule(current_);
      Sequence body{x};
      if (have_inner) body.push_back({true, inner});
      bodies_[id] = {body, {}};
      inner = id;
      have_inner = true;
    }
    seq.push_back({true, inner});
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // One character of a literal or class: an escape or one UTF-8 encoded code point.
  uint32_t parse_char() {
    if (pos_ >= src_.size()) fail("expected a character, found the end of the grammar");
    const unsigned char c = static_cast<unsigned char>(src_[pos_]);
    if (c == '\\') {
      const size_t at = pos_;
      ++pos_;
      if (pos_ >= src_.size()) fail("expected an escape after '\\', found the end of the grammar");
      const char e = src_[pos_++];
      int digits = 0;
      switch (e) {
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': return static_cast<uint32_t>(e);
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default: fail_at(at, std::string("unknown escape '\\") + e + "'");
      }
      uint32_t v = 0;
      for (int i = 0; i < digits; ++i) {
        const int h = pos_ < src_.size() ? hex_value(src_[pos_]) : -1;
        if (h < 0) fail("expected " + std::to_string(digits) + " hex digits after '\\" + e + "', found " + found());
        v = v * 16 + static_cast<uint32_t>(h);
        ++pos_;
      }
      if (v > 0x10FFFF) fail_at(at, "code point beyond U+10FFFF");
      return v;
    }
    if (c < 0x80) {
      if (c == '\n') fail("expected a character, found the end of the line (use \\n)");
      ++pos_;
      return c;
    }
    const int n = c >= 0xF8 ? -1 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
    if (n < 0) fail("invalid UTF-8 in the grammar");
    uint32_t v = c & (0x3F >> n);
    ++pos_;
    for (int i = 0; i < n; ++i) {
      if (pos_ >= src_.size() || (static_cast<unsigned char>(src_[pos_]) & 0xC0) != 0x80)
        fail("invalid UTF-8 in the grammar");
      v = (v << 6) | (static_cast<unsigned char>(src_[pos_]) & 0x3F);
      ++pos_;
    }
    return v;
  }

  uint32_t add_class(CharClass cls) {
    std::sort(cls.ranges.begin(), cls.ranges.end());
    std::vector<std::pair<uint32_t, uint32_t>> merged;
    for (const auto& r : cls.ranges) {
      if (!merged.empty() && r.first <= merged.back().second + 1)
        merged.back().second = std::max(merged.back().second, r.second);
      else
        merged.push_back(r);
    }
    cls.ranges = std::move(merged);
    g_.classes_.push_back(std::move(cls));
    return static_cast<uint32_t>(g_.classes_.size() - 1);
  }

  void flatten() {
    for (size_t r = 0; r < bodies_.size(); ++r) {
      for (const Sequence& seq : bodies_[r]) {
        g_.rules_[r].push_back(static_cast<uint32_t>(g_.elements_.size()));
        for (const Item& it : seq)
          g_.elements_.push_back({it.is_rule ? Element::rule : Element::chr, it.value});
        g_.elements_.push_back({Element::end, 0});
      }
    }
  }

  // Left recursion: rule r reaches itself through leftmost items that can all match empty.
  void check_left_recursion() {
    const size_t R = bodies_.size();
    std::vector<char> nullable(R, 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < R; ++r) {
        if (nullable[r]) continue;
        for (const Sequence& seq : bodies_[r]) {
          bool all = true;
          for (const Item& it : seq)
            if (!it.is_rule || !nullable[it.value]) {
              all = false;
              break;
            }
          if (all) {
            nullable[r] = 1;
            changed = true;
            break;
          }
        }
      }
    }
    std::vector<std::vector<uint32_t>> left(R);  // rules that may come first in r
    for (size_t r = 0; r < R; ++r)
      for (const Sequence& seq : bodies_[r])
        for (const Item& it : seq) {
          if (!it.is_rule) break;
          left[r].push_back(it.value);
          if (!nullable[it.value]) break;
        }
    // Depth-first, iteratively (chains of generated rules can be long).
    std::vector<uint8_t> color(R, 0);  // 0 new, 1 on the path, 2 done
    std::vector<std::pair<uint32_t, size_t>> path;  // rule, next entry of left[rule] to follow
    for (uint32_t start = 0; start < R; ++start) {
      if (color[start] != 0) continue;
      color[start] = 1;
      path.emplace_back(start, 0);
      while (!path.empty()) {
        auto& [r, i] = path.back();
        if (i == left[r].size()) {
          color[r] = 2;
          path.pop_back();
          continue;
        }
        const uint32_t next = left[r][i++];
        if (color[next] == 1) {
          std::string name = "'" + g_.names_[next] + "'";
          if (auto owner = owner_.find(next); owner != owner_.end())
            name += " (a group or repetition in rule '" + owner->second + "')";
          throw Error(ErrorCategory::invalid_argument, "grammar: left recursion in rule " + name +
                                                           ": it can reach itself before matching a character");
        }
        if (color[next] == 0) {
          color[next] = 1;
          path.emplace_back(next, 0);
        }
      }
    }
  }

  std::string_view src_;
  size_t pos_ = 0;
  Grammar g_;
  std::map<std::string, uint32_t> ids_;
  std::vector<bool> defined_;
  std::vector<size_t> first_use_;  // offset of each rule's first mention
  std::vector<Alternatives> bodies_;
  std::string current_;
  int generated_ = 0;
  int depth_ = 0;  // groups open
  static constexpr int64_t kMaxElements = 1 << 20;
  size_t elements_ = 0;  // items made by repetitions so far
  std::map<uint32_t, std::string> owner_;  // generated rule -> the rule it was written in
};

Grammar Grammar::parse(std::string_view text) { return Parser(text).run(); }

}  // namespace kestrel::grammar
