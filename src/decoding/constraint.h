// decoding/constraint.h: constrained decoding for one sequence (GenerationRequest.
// constraint): the grammar's matcher over the generated text, which tokens it allows next,
// and the host-side resampling from the masked distribution when the sampler's token is
// not allowed. The decoder keeps one ConstraintState per sequence (n samples: one each).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "backend.h"
#include "decoding/grammar.h"
#include "kestrel/decoder.h"

namespace kestrel {

class Tokenizer;

// A request's constraint, compiled once and shared by its sequences.
struct CompiledConstraint {
  std::shared_ptr<const grammar::Grammar> grammar;
  std::shared_ptr<const grammar::VocabularyTrie> trie;
  std::vector<int32_t> end_tokens;  // allowed where the grammar can end (EOS if stop_at_eos, stop_token_ids)
};

// Null when the request has no constraint. Throws Error(invalid_argument) "request i: ..."
// naming the option (both set; a grammar or schema that does not parse / convert).
std::shared_ptr<const CompiledConstraint> compile_constraint(const GenerationRequest& request, size_t index,
                                                             const Tokenizer& tokenizer);
// Parses / converts without the vocabulary (for the request checks before any work).
void check_constraint(const GenerationRequest& request, size_t index);

class ConstraintState {
 public:
  ConstraintState(std::shared_ptr<const CompiledConstraint> compiled, const Tokenizer& tokenizer);

  // Whether `token` may come next.
  bool allows(int32_t token) const;
  // The tokens that may come next, in increasing order (the trie walk plus end tokens).
  void allowed_tokens(std::vector<int32_t>& out) const;
  // Advances over a token the decoder appended (an end token leaves the state as it is).
  void accept(int32_t token);
  // The grammar is complete and admits nothing more: the sequence ends.
  bool must_end() const { return matcher_.must_end(); }

  // The token for one sequence given its sampled token and its logits row as the sampler
  // left it (penalties and temperature applied): the sampled token when allowed, else a
  // draw from the row masked to the allowed tokens, with the row's top-k / top-p / min-p
  // applied over the allowed tokens and a draw independent of the sampler's. Returns
  // nullopt when the grammar allows no token at all. Counts the masks it computes.
  std::optional<int32_t> choose(int32_t sampled, std::span<const float> logits, const SamplingRow& row);
  int masks_computed() const { return masks_; }

 private:
  std::shared_ptr<const CompiledConstraint> compiled_;
  const Tokenizer* tokenizer_;
  grammar::Matcher matcher_;
  int masks_ = 0;
};

}  // namespace kestrel
