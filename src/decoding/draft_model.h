// decoding/draft_model.h: the drafter of speculative decoding with a second, smaller model
// (same vocabulary), running in its own session beside the target's.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "core/session_state.h"
#include "decoding/step_runner.h"

namespace kestrel {

class DraftModel {
 public:
  explicit DraftModel(detail::SessionState& draft) : s_(draft), runner_(draft) {}
  ~DraftModel();  // every block goes back to the draft session's pool
  DraftModel(const DraftModel&) = delete;
  DraftModel& operator=(const DraftModel&) = delete;

  // One sequence to draft for. The sequence's history is its prompt followed by the tokens
  // generated so far; the draft cache holds a prefix of it (see keep()).
  struct Job {
    size_t key = 0;                     // the sequence (its request index)
    std::span<const int32_t> history;   // [L] prompt + generated
    int prompt_length = 0;
    SamplingRow row;                    // the request's settings; row.step = index of the next token
    int count = 0;                      // tokens to draft, >= 1
    std::vector<int32_t> tokens;        // out: [<= count] drafted tokens
    std::vector<std::vector<double>> q; // out: the [V] distribution each was drawn from
  };

  // Drafts for all jobs together: context steps of the draft model feed each history past
  // what its cache holds (chunked to the session's max_step_tokens; the first token is
  // drawn from the last of them), then one generation step per further token. Token j is
  // drawn from the sampler's distribution q_j (kernels/cpu/sampling_cpu.cc steps 1-8, the
  // request's settings, over the history and tokens[0 : j]) with
  // speculative_uniform(seed, step + j, draft): a point mass for greedy requests. A job
  // whose draft cache is full drafts fewer tokens (maybe none); nothing throws for that.
  void draft(std::span<Job> jobs);
  // The first `positions` tokens of the sequence are settled (the rest of what was fed,
  // drafted tokens the target rejected, is dropped from the draft cache).
  void keep(size_t key, int positions);
  void release(size_t key);

 private:
  struct Sequence {
    std::vector<int32_t> blocks;
    int cached = 0;  // positions of the history in the draft cache
  };
  bool reserve(Sequence& seq, int positions);
  // Reads the logits rows of the step and draws the next token of each job in `rows`.
  void draw(const std::vector<std::pair<Job*, int>>& rows, int total_rows);

  detail::SessionState& s_;
  StepRunner runner_;
  std::map<size_t, Sequence> seqs_;
  std::vector<float> logits_;  // host copy of a step's logits rows
};

}  // namespace kestrel
