// decoding/speculative.h: the host side of speculative decoding: prompt-lookup drafting,
// the sampler's distribution as a dense vector, and the rejection rule that keeps the
// output distribution exactly the model's.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend.h"

namespace kestrel {

// Prompt lookup: finds the longest n-gram (n from ngram_max down to ngram_min) that ends
// `history` and also occurs earlier in it, and returns up to `max_tokens` tokens that
// followed its latest earlier occurrence; empty when nothing matches.
std::vector<int32_t> prompt_lookup_draft(std::span<const int32_t> history, int ngram_min, int ngram_max,
                                         int max_tokens);

// The distribution the backend's sampler draws from for one row (kernels/cpu/
// sampling_cpu.cc steps 1-8: penalties over `history`, whose first `prompt_length` tokens
// are the prompt; temperature; softmax; top-k; top-p; min-p), dense over the vocabulary:
// p[t] sums to 1, zero outside the kept candidates. Temperature <= 0 gives a point mass on
// the argmax (lowest id on ties).   logits: [V] f32; p: resized to [V]
void sampling_distribution(std::span<const float> logits, const SamplingRow& row, std::span<const int32_t> history,
                           int prompt_length, std::vector<double>& p);

// The token whose cumulative probability (in id order) first exceeds u * sum(p).
int32_t draw_token(std::span<const double> p, double u);

// Independent uniform streams of one request for speculative sampling (the plain sampler
// uses sampling_uniform(seed, step) itself).
enum class SpeculativeDraw : uint64_t { draft = 1, accept = 2, residual = 3 };
double speculative_uniform(uint64_t seed, uint64_t step, SpeculativeDraw what);

// The verdict on d drafted tokens.
struct Verdict {
  int accepted = 0;    // drafted tokens kept, a prefix: 0 .. d
  int32_t next = 0;    // the model's own token after them (a correction, or a bonus if all passed)
};

// The standard rejection rule (Leviathan et al. 2023; Chen et al. 2023). Drafted token
// x_j (j < d) was drawn from q[j]; p[j] is the model's distribution at the same position
// and p[d] the one after the last drafted token. Accept x_j with probability
// min(1, p_j(x_j) / q_j(x_j)); at the first rejection draw `next` from the normalized
// max(0, p_j - q_j); if all pass draw it from p[d]. Uniforms come from
// speculative_uniform(seed, step + j, ...), step being the index of x_0 in the output.
//   drafted: [d]; q: d rows of [V]; p: d + 1 rows of [V]
Verdict verify_draft(std::span<const int32_t> drafted, std::span<const std::vector<double>> q,
                     std::span<const std::vector<double>> p, uint64_t seed, uint64_t step);

}  // namespace kestrel
