// decoding/scheduler.h: the one scheduler of generation. Requests (jobs) wait in a FIFO
// queue, join the running batch as slots free up, have their prompts processed in chunks
// under max_step_tokens, and decode one token (or a verified draft) per step until a stop
// condition. Decoder::generate drives it on the calling thread until it is idle (every
// rank of a parallel run in lockstep); the Engine drives it on its own thread while other
// threads submit requests. The scheduler itself is not thread-safe: one thread calls it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "core/session_state.h"
#include "decoding/constraint.h"
#include "decoding/draft_model.h"
#include "decoding/step_runner.h"
#include "decoding/stop_matcher.h"
#include "kestrel/decoder.h"

namespace kestrel {

// One request in the scheduler, from submission to its result.
struct Job {
  size_t index = 0;  // StreamEvent::request and the "request N" of error messages
  GenerationRequest request;
  GenerationResult result;  // result.prompt_ids: the checked prompt (Scheduler::check)
  StreamCallback on_token;  // may be empty
  // Called once, on the scheduler's thread, when the result is final.
  std::function<void(Job&)> on_finished;
  // Set from any thread; the request ends with FinishReason::cancelled at the next step.
  std::atomic<bool> cancelled{false};
  int live = 0;  // sequences running or still to fork off; 0 once admitted and done
  // GenerationRequest.constraint compiled (Scheduler::check); null without one.
  std::shared_ptr<const CompiledConstraint> constraint;
};

class Scheduler {
 public:
  // `draft`: the draft model's session for SpeculativeMethod::draft_model requests.
  Scheduler(detail::SessionState& session, detail::SessionState* draft);
  ~Scheduler();  // every block goes back to the pool
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Validates the job's request (throws Error(invalid_argument / limit / unsupported)
  // naming job.index and the field) and sets job.result.prompt_ids. Reads only the model
  // and the session's options: safe on any thread.
  static void check(Job& job, const detail::SessionState& session, bool has_draft);
  // Queues a checked job behind the others (FIFO admission).
  void add(std::shared_ptr<Job> job);

  // One iteration: cancellations, admission, one context-phase step (prompt chunks under
  // max_step_tokens), one generation step for the running sequences. Prefill and decode
  // alternate, so a long prompt never stalls the sequences already decoding.
  void step();
  bool idle() const { return waiting_.empty() && active_.empty(); }
  size_t waiting() const { return waiting_.size(); }
  size_t running() const { return active_.size(); }
  // Ends every job (running or waiting) with FinishReason::error and `message`, e.g.
  // after a step threw; their blocks go back to the pool.
  void abort_all(const std::string& message);
  // Ends every job with FinishReason::cancelled, without running a step.
  void cancel_all();

 private:
  // A job's sequence while it holds a slot of the session (one per completion).
  struct Sequence {
    std::shared_ptr<Job> job;
    size_t key = 0;  // the job's DraftModel key
    std::vector<int32_t> prompt;
    std::vector<int32_t> blocks;  // KV-cache block table
    int cached = 0;               // positions already in the KV cache
    StopMatcher matcher;
    SamplingRow row;  // the sampling settings (sampling step: StepRunner::sample)
    std::chrono::steady_clock::time_point started, first_token;
    bool finished = false;
    int sample = 0;  // which of the request's num_return_sequences completions it is
    int forks = 0;   // completions still to split off it once its prompt is cached
    std::optional<ConstraintState> constraint;  // the job's grammar state (a copy per fork)

    Sequence(std::shared_ptr<Job> j, size_t k);
  };
  // A sequence's drafted tokens, and what the step that verifies them feeds: its last
  // token followed by the draft.
  struct Draft {
    Sequence* seq = nullptr;
    std::vector<int32_t> history;        // prompt + generated
    std::vector<int32_t> tokens;         // [d] drafted
    std::vector<std::vector<double>> q;  // [d][V] draft distributions (sampled draft_model only)
    std::vector<int32_t> fed;            // [d + 1] last token, then the draft
    // Accept by comparing with the model's own draws (greedy, or a point-mass draft such as
    // prompt lookup: the rejection rule reduces to that) rather than by the full rule.
    bool by_sampling() const { return q.empty(); }
  };

  void cancel_requested();
  void admit();
  std::vector<Sequence*> fork(Sequence& parent, int row, int first_row);
  std::vector<int32_t>& tokens_of(const Sequence& seq);
  std::vector<TokenLogprobs>& logprobs_of(const Sequence& seq);
  // Logits rows [0, rows) on the host, row-major [rows, V], when `wanted` (a sequence of
  // the step asks for log-probabilities); read before sampling, which applies penalties to
  // them in place. Empty otherwise: nothing is read.
  std::vector<float> logits_for_logprobs(bool wanted, int rows);
  void run_step(std::span<const StepSlice> slices, bool generation);
  void prefill();
  void decode();
  void decode_plain(const std::vector<Sequence*>& seqs);
  int draft_budget(Sequence& seq);
  std::vector<int32_t> history(const Sequence& seq);
  void verify(std::vector<Draft>& drafts);
  void verify_step(std::span<Draft> drafts, int rows);
  bool reserve(Sequence& seq, int positions);
  void sample_and_advance(std::vector<Sequence*> seqs);
  void apply_constraints(std::vector<Sequence*>& seqs, std::vector<int32_t>& tokens);
  // tokens[i]: sequence i's new tokens; logprobs[i] (empty when not wanted): theirs.
  void advance_all(const std::vector<Sequence*>& seqs, const std::vector<std::vector<int32_t>>& tokens,
                   const std::vector<std::vector<TokenLogprobs>>& logprobs);
  bool advance(Sequence& seq, int32_t token, const TokenLogprobs* logprobs);
  bool stream(Job& job, const StreamEvent& event);
  void finish(Sequence& seq, FinishReason reason, const std::string& text);
  void complete(Job& job);

  detail::SessionState& s_;
  detail::SessionState* draft_session_;
  StepRunner runner_;
  std::deque<std::shared_ptr<Job>> waiting_;
  std::deque<Sequence> active_;  // deque: pointers stay valid while sequences are added
  std::optional<int32_t> eos_;
  std::unique_ptr<DraftModel> drafter_;  // with a draft_model request
  size_t next_id_ = 0;                   // DraftModel keys: one per sequence's job
  int pending_forks_ = 0;                // slots promised to completions not yet split off
  std::vector<std::pair<int32_t, int32_t>> copies_;  // copy-on-write before the next step
};

}  // namespace kestrel
