// decoding/grammar.cc: the grammar's character classes, the matcher (the pushdown stacks
// advanced byte by byte over UTF-8) and the vocabulary trie that turns a matcher state into
// the allowed tokens. The GBNF parser is in grammar_parser.cc.
#include "decoding/grammar.h"

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <unordered_map>

#include "kestrel/error.h"
#include "kestrel/tokenizer.h"

namespace kestrel::grammar {

bool CharClass::matches(uint32_t cp) const {
  bool in = false;
  for (const auto& [lo, hi] : ranges)
    if (cp >= lo && cp <= hi) {
      in = true;
      break;
    }
  return in != negated;
}

bool CharClass::intersects(uint32_t lo, uint32_t hi) const {
  if (!negated) {
    for (const auto& [a, b] : ranges)
      if (a <= hi && b >= lo) return true;
    return false;
  }
  // Negated: some point of [lo, hi] lies outside every range (ranges sorted, disjoint).
  uint32_t next = lo;
  for (const auto& [a, b] : ranges) {
    if (b < next) continue;
    if (a > next) return true;
    if (b >= hi) return false;
    next = b + 1;
  }
  return next <= hi;
}

// --- matcher -------------------------------------------------------------------------------

namespace {

void normalize(std::vector<std::vector<uint32_t>>& stacks) {
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
}

}  // namespace

Matcher::Matcher(std::shared_ptr<const Grammar> grammar) : grammar_(std::move(grammar)) {
  const Grammar& g = *grammar_;
  for (uint32_t alt : g.rules()[g.root()]) {
    std::vector<uint32_t> stack;
    if (g.elements()[alt].kind != Element::end) stack.push_back(alt);
    expand(stack, state_.stacks);
  }
  normalize(state_.stacks);
}

// Replaces rule references on top of `stack` by their alternatives until every resulting
// stack has a character element on top (or is empty), appending them to `out`.
void Matcher::expand(std::vector<uint32_t>& stack, std::vector<std::vector<uint32_t>>& out, int depth) const {
  if (depth > kMaxExpansionDepth)
    throw Error(ErrorCategory::unsupported, "grammar: a chain of more than " + std::to_string(kMaxExpansionDepth) +
                                                " rules entered before a character");
  // An ambiguous grammar (nested optional repetitions) can multiply the parses: refuse
  // rather than let one step take unbounded time and memory.
  if (out.size() > kMaxStacks)
    throw Error(ErrorCategory::unsupported, "grammar: more than " + std::to_string(kMaxStacks) +
                                                " simultaneous parses (the grammar is too ambiguous)");
  if (stack.empty()) {
    out.push_back(stack);
    return;
  }
  const auto& el = grammar_->elements();
  const uint32_t pos = stack.back();
  if (el[pos].kind == Element::chr) {
    out.push_back(stack);
    return;
  }
  // A rule reference: continue after it, then enter each alternative.
  std::vector<uint32_t> rest(stack.begin(), stack.end() - 1);
  if (el[pos + 1].kind != Element::end) rest.push_back(pos + 1);
  for (uint32_t alt : grammar_->rules()[el[pos].value]) {
    std::vector<uint32_t> next = rest;
    if (el[alt].kind != Element::end) next.push_back(alt);
    expand(next, out, depth + 1);
  }
}

void Matcher::accept_code_point(const MatchState& from, uint32_t cp, MatchState& to) const {
  const auto& el = grammar_->elements();
  const auto& classes = grammar_->classes();
  to.stacks.clear();
  to.partial_left = 0;
  to.partial = 0;
  for (const auto& stack : from.stacks) {
    if (stack.empty()) continue;
    const uint32_t pos = stack.back();
    if (!classes[el[pos].value].matches(cp)) continue;
    std::vector<uint32_t> next(stack.begin(), stack.end() - 1);
    if (el[pos + 1].kind != Element::end) next.push_back(pos + 1);
    expand(next, to.stacks);
  }
  normalize(to.stacks);
}

bool Matcher::partial_possible(const MatchState& s) const {
  const auto& el = grammar_->elements();
  for (const auto& stack : s.stacks)
    if (!stack.empty() && grammar_->classes()[el[stack.back()].value].intersects(s.partial_lo, s.partial_hi))
      return true;
  return false;
}

void Matcher::step(const MatchState& from, uint8_t b, MatchState& to) const {
  auto refuse = [&] {
    to.stacks.clear();
    to.partial_left = 0;
  };
  if (from.partial_left == 0) {
    if (b < 0x80) {
      accept_code_point(from, b, to);
      return;
    }
    int n;
    if (b >= 0xC2 && b <= 0xDF) n = 1;
    else if (b >= 0xE0 && b <= 0xEF) n = 2;
    else if (b >= 0xF0 && b <= 0xF4) n = 3;
    else return refuse();
    to.stacks = from.stacks;
    to.partial = b & (0x3F >> n);
    to.partial_left = static_cast<uint8_t>(n);
  } else {
    if ((b & 0xC0) != 0x80) return refuse();
    to.stacks = from.stacks;
    to.partial = (from.partial << 6) | (b & 0x3F);
    to.partial_left = static_cast<uint8_t>(from.partial_left - 1);
    if (to.partial_left == 0) {
      const uint32_t cp = to.partial;
      // Overlong forms and surrogates are not UTF-8.
      if (cp < from.partial_lo || cp > from.partial_hi || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return refuse();
      MatchState tmp;
      tmp.stacks = std::move(to.stacks);
      accept_code_point(tmp, cp, to);
      return;
    }
  }
  // The code points this prefix may still become (on the lead byte: the shortest code
  // point of this length, which rules out overlong forms; never beyond U+10FFFF).
  const int left = to.partial_left;
  uint32_t lo = to.partial << (6 * left), hi = lo | ((1u << (6 * left)) - 1);
  if (from.partial_left == 0) {
    static constexpr uint32_t kShortest[4] = {0, 0x80, 0x800, 0x10000};
    lo = std::max(lo, kShortest[left]);
    hi = std::min(hi, 0x10FFFFu);
  } else {
    lo = std::max(lo, from.partial_lo);
    hi = std::min(hi, from.partial_hi);
  }
  if (lo > hi) return refuse();
  to.partial_lo = lo;
  to.partial_hi = hi;
  if (!partial_possible(to)) return refuse();
}

bool Matcher::allows(std::string_view bytes) const {
  if (bytes.empty()) return false;
  MatchState a = state_, b;
  for (char c : bytes) {
    step(a, static_cast<uint8_t>(c), b);
    if (b.dead()) return false;
    std::swap(a, b);
  }
  return true;
}

bool Matcher::accept(std::string_view bytes) {
  if (bytes.empty()) return false;
  MatchState a = state_, b;
  for (char c : bytes) {
    step(a, static_cast<uint8_t>(c), b);
    if (b.dead()) return false;
    std::swap(a, b);
  }
  state_ = std::move(a);
  return true;
}

bool Matcher::can_end() const {
  if (state_.partial_left != 0) return false;
  return !state_.stacks.empty() && state_.stacks.front().empty();  // sorted: the empty stack first
}

bool Matcher::must_end() const { return can_end() && state_.stacks.size() == 1; }

bool Matcher::matches(std::shared_ptr<const Grammar> grammar, std::string_view text) {
  Matcher m(std::move(grammar));
  if (!text.empty() && !m.accept(text)) return false;
  return m.can_end();
}

// --- vocabulary trie -----------------------------------------------------------------------

VocabularyTrie::VocabularyTrie(const Tokenizer& tokenizer) {
  const int32_t V = tokenizer.vocab_size();
  std::vector<std::pair<std::string_view, int32_t>> words;
  words.reserve(static_cast<size_t>(V));
  for (int32_t t = 0; t < V; ++t) {
    if (tokenizer.is_special(t)) continue;
    const std::string& b = tokenizer.token_bytes(t);
    if (!b.empty()) words.emplace_back(b, t);
  }
  std::sort(words.begin(), words.end());
  // Build breadth-first from the sorted words: a node is a range of words sharing `depth`
  // leading bytes; its children are the sub-ranges by the next byte.
  struct Pending {
    size_t begin, end, depth;
    uint32_t node;
  };
  nodes_.push_back({});
  std::vector<Pending> queue{{0, words.size(), 0, 0}};
  for (size_t q = 0; q < queue.size(); ++q) {
    const Pending p = queue[q];
    size_t i = p.begin;
    Node& node = nodes_[p.node];
    node.first_token = static_cast<uint32_t>(tokens_.size());
    while (i < p.end && words[i].first.size() == p.depth) tokens_.push_back(words[i++].second);
    nodes_[p.node].token_count = static_cast<uint32_t>(tokens_.size()) - nodes_[p.node].first_token;
    nodes_[p.node].first_child = static_cast<uint32_t>(edges_.size());
    std::vector<Pending> children;
    while (i < p.end) {
      const uint8_t byte = static_cast<uint8_t>(words[i].first[p.depth]);
      size_t j = i;
      while (j < p.end && static_cast<uint8_t>(words[j].first[p.depth]) == byte) ++j;
      const uint32_t child = static_cast<uint32_t>(nodes_.size());
      nodes_.push_back({});
      edges_.push_back({byte, child});
      queue.push_back({i, j, p.depth + 1, child});
      i = j;
    }
    nodes_[p.node].child_count = static_cast<uint32_t>(edges_.size()) - nodes_[p.node].first_child;
  }
  // Children were appended as their parents were dequeued: each node's edges are contiguous.
  for (int32_t t : tokens_) max_token_ = std::max(max_token_, t);
}

namespace {

// The states met in one trie walk, interned, with their byte transitions cached: inside a
// repetition (a JSON string's characters) most bytes lead back to a few states, so most
// trie nodes cost one hash lookup instead of a matcher step.
class StateCache {
 public:
  explicit StateCache(const Matcher& m) : m_(m) {}
  int intern(MatchState&& s) {
    if (s.dead()) return -1;
    std::string key = serialize(s);
    auto [it, fresh] = ids_.emplace(std::move(key), static_cast<int>(states_.size()));
    if (fresh) {
      states_.push_back(std::move(s));
      transitions_.emplace_back();
      transitions_.back().fill(kUnknown);
    }
    return it->second;
  }
  int next(int id, uint8_t byte) {
    int& known = transitions_[static_cast<size_t>(id)][byte];
    if (known != kUnknown) return known;
    MatchState to;
    m_.step(states_[static_cast<size_t>(id)], byte, to);
    const int result = intern(std::move(to));  // may grow transitions_: no reference kept
    transitions_[static_cast<size_t>(id)][byte] = result;
    return result;
  }

 private:
  static std::string serialize(const MatchState& s) {
    std::string out;
    auto put = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
    put(s.partial);
    put(s.partial_left);
    put(s.partial_lo);
    put(s.partial_hi);
    for (const auto& stack : s.stacks) {
      put(static_cast<uint32_t>(stack.size()));
      for (uint32_t e : stack) put(e);
    }
    return out;
  }
  const Matcher& m_;
  std::vector<MatchState> states_;
  std::unordered_map<std::string, int> ids_;
  static constexpr int kUnknown = -2;
  std::vector<std::array<int, 256>> transitions_;  // per state and byte: next state, -1 dead
};

}  // namespace

void VocabularyTrie::allowed_tokens(const Matcher& matcher, std::vector<int32_t>& out) const {
  out.clear();
  std::vector<uint8_t> allowed(static_cast<size_t>(max_token_) + 1, 0);
  StateCache cache(matcher);
  MatchState start = matcher.state();
  const int root = cache.intern(std::move(start));
  if (root < 0) return;
  // Depth-first over (node, state id); children of a live node whose byte keeps the
  // state alive contribute their tokens and are visited in turn.
  std::vector<std::pair<uint32_t, int>> todo{{0u, root}};
  while (!todo.empty()) {
    const auto [node, state] = todo.back();
    todo.pop_back();
    const Node& n = nodes_[node];
    for (uint32_t e = n.first_child; e < n.first_child + n.child_count; ++e) {
      const Edge& edge = edges_[e];
      const int next = cache.next(state, edge.byte);
      if (next < 0) continue;
      const Node& child = nodes_[edge.node];
      for (uint32_t k = child.first_token; k < child.first_token + child.token_count; ++k)
        allowed[static_cast<size_t>(tokens_[k])] = 1;
      if (child.child_count > 0) todo.emplace_back(edge.node, next);
    }
  }
  for (size_t t = 0; t < allowed.size(); ++t)  // increasing order without a sort
    if (allowed[t]) out.push_back(static_cast<int32_t>(t));
}

std::shared_ptr<const VocabularyTrie> vocabulary_trie(const Tokenizer& tokenizer) {
  // Keyed by the tokenizer's address and a fingerprint of its vocabulary, so that a new
  // tokenizer at a freed one's address never gets a stale trie; a few are kept.
  uint64_t fingerprint = 1469598103934665603ull;
  const int32_t V = tokenizer.vocab_size();
  for (int32_t t = 0; t < V; ++t) {
    for (char c : tokenizer.token_bytes(t)) fingerprint = (fingerprint ^ static_cast<uint8_t>(c)) * 1099511628211ull;
    fingerprint = (fingerprint ^ (tokenizer.is_special(t) ? 0x1FFu : 0x100u)) * 1099511628211ull;
  }
  struct Entry {
    const Tokenizer* tokenizer;
    uint64_t fingerprint;
    std::shared_ptr<const VocabularyTrie> trie;
  };
  static std::mutex mutex;
  static std::vector<Entry> cache;
  {
    std::lock_guard lock(mutex);
    for (const Entry& e : cache)
      if (e.tokenizer == &tokenizer && e.fingerprint == fingerprint) return e.trie;
  }
  auto trie = std::make_shared<const VocabularyTrie>(tokenizer);
  std::lock_guard lock(mutex);
  std::erase_if(cache, [&](const Entry& e) { return e.tokenizer == &tokenizer; });
  if (cache.size() >= 4) cache.erase(cache.begin());
  cache.push_back({&tokenizer, fingerprint, trie});
  return trie;
}

}  // namespace kestrel::grammar
