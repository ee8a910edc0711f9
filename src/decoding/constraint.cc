#include "decoding/constraint.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "decoding/json_schema.h"
#include "decoding/speculative.h"
#include "kestrel/error.h"
#include "kestrel/tokenizer.h"

namespace kestrel {

namespace {

std::shared_ptr<const grammar::Grammar> parse_constraint(const GenerationRequest& request, size_t index) {
  const ConstraintOptions& c = request.constraint;
  const std::string who = "request " + std::to_string(index) + ": ";
  if (!c.grammar.empty() && !c.json_schema.empty())
    throw Error(ErrorCategory::invalid_argument,
                who + "ConstraintOptions.grammar and ConstraintOptions.json_schema are both set (give one)");
  const char* field = c.grammar.empty() ? "ConstraintOptions.json_schema" : "ConstraintOptions.grammar";
  try {
    const std::string text = c.grammar.empty() ? json_schema_to_grammar(c.json_schema) : c.grammar;
    return std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(text));
  } catch (const Error& e) {
    throw Error(e.category(), who + field + ": " + e.message());
  }
}

}  // namespace

void check_constraint(const GenerationRequest& request, size_t index) {
  if (request.constraint.grammar.empty() && request.constraint.json_schema.empty()) return;
  parse_constraint(request, index);
}

std::shared_ptr<const CompiledConstraint> compile_constraint(const GenerationRequest& request, size_t index,
                                                             const Tokenizer& tokenizer) {
  if (request.constraint.grammar.empty() && request.constraint.json_schema.empty()) return nullptr;
  auto c = std::make_shared<CompiledConstraint>();
  c->grammar = parse_constraint(request, index);
  c->trie = grammar::vocabulary_trie(tokenizer);
  if (request.stop.stop_at_eos && tokenizer.eos_id()) c->end_tokens.push_back(*tokenizer.eos_id());
  for (int32_t t : request.stop.stop_token_ids) c->end_tokens.push_back(t);
  std::sort(c->end_tokens.begin(), c->end_tokens.end());
  c->end_tokens.erase(std::unique(c->end_tokens.begin(), c->end_tokens.end()), c->end_tokens.end());
  return c;
}

ConstraintState::ConstraintState(std::shared_ptr<const CompiledConstraint> compiled, const Tokenizer& tokenizer)
    : compiled_(std::move(compiled)), tokenizer_(&tokenizer), matcher_(compiled_->grammar) {}

bool ConstraintState::allows(int32_t token) const {
  if (std::binary_search(compiled_->end_tokens.begin(), compiled_->end_tokens.end(), token)) return matcher_.can_end();
  if (token < 0 || token >= tokenizer_->vocab_size() || tokenizer_->is_special(token)) return false;
  return matcher_.allows(tokenizer_->token_bytes(token));
}

void ConstraintState::allowed_tokens(std::vector<int32_t>& out) const {
  compiled_->trie->allowed_tokens(matcher_, out);
  if (matcher_.can_end()) {
    // End tokens are special (left out of the trie) or ordinary tokens that end the
    // sequence here: either way they are allowed now, once.
    out.insert(out.end(), compiled_->end_tokens.begin(), compiled_->end_tokens.end());
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
  } else {
    std::erase_if(out, [&](int32_t t) { return std::binary_search(compiled_->end_tokens.begin(), compiled_->end_tokens.end(), t); });
  }
}

void ConstraintState::accept(int32_t token) {
  if (std::binary_search(compiled_->end_tokens.begin(), compiled_->end_tokens.end(), token)) return;
  if (!matcher_.accept(tokenizer_->token_bytes(token)))
    throw Error(ErrorCategory::internal, "constrained decoding appended token " + std::to_string(token) +
                                             " that the grammar does not allow");
}

std::optional<int32_t> ConstraintState::choose(int32_t sampled, std::span<const float> logits, const SamplingRow& row) {
  if (allows(sampled)) return sampled;
  ++masks_;
  std::vector<int32_t> allowed;
  allowed_tokens(allowed);
  if (allowed.empty()) return std::nullopt;
  const size_t V = logits.size();
  std::vector<float> masked(V, -std::numeric_limits<float>::infinity());
  for (int32_t t : allowed)
    if (static_cast<size_t>(t) < V) masked[static_cast<size_t>(t)] = logits[static_cast<size_t>(t)];
  // The row already holds penalties and temperature: only the filters and the draw remain.
  SamplingRow r = row;
  r.repetition_penalty = 1.0f;
  r.presence_penalty = 0.0f;
  r.frequency_penalty = 0.0f;
  if (r.temperature > 0.0f) r.temperature = 1.0f;
  std::vector<double> p;
  sampling_distribution(masked, r, {}, 0, p);
  // Its own stream: this draw must not depend on the sampler's (which landed outside).
  constexpr uint64_t kGrammarStream = 0x9E3779B97F4A7C15ull;
  const int32_t token = draw_token(p, sampling_uniform(row.seed ^ kGrammarStream, row.step));
  if (std::binary_search(allowed.begin(), allowed.end(), token)) return token;
  return allowed.front();  // every allowed logit was -inf: any allowed token will do
}

}  // namespace kestrel
