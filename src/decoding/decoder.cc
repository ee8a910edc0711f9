#include "kestrel/decoder.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>

#include "core/session_state.h"
#include "decoding/beam_search.h"
#include "decoding/constraint.h"
#include "decoding/draft_model.h"
#include "decoding/request_checks.h"
#include "decoding/speculative.h"
#include "decoding/step_runner.h"
#include "decoding/stop_matcher.h"
#include "kestrel/error.h"

namespace kestrel {

const char* to_string(FinishReason reason) noexcept {
  switch (reason) {
    case FinishReason::length: return "length";
    case FinishReason::stop_token: return "stop_token";
    case FinishReason::stop_string: return "stop_string";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::error: return "error";
  }
  return "?";
}

const char* to_string(SpeculativeMethod method) noexcept {
  switch (method) {
    case SpeculativeMethod::none: return "none";
    case SpeculativeMethod::prompt_lookup: return "prompt-lookup";
    case SpeculativeMethod::draft_model: return "draft";
  }
  return "?";
}

SpeculativeMethod parse_speculative_method(std::string_view text, std::string_view what) {
  if (text == "none") return SpeculativeMethod::none;
  if (text == "prompt-lookup") return SpeculativeMethod::prompt_lookup;
  if (text == "draft" || text == "draft-model") return SpeculativeMethod::draft_model;
  throw Error(ErrorCategory::invalid_argument,
              std::string(what) + " = '" + std::string(text) + "' (expected none, prompt-lookup or draft)");
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A request while it holds a slot of the session.
struct Sequence {
  size_t request = 0;
  std::vector<int32_t> prompt;
  std::vector<int32_t> blocks;  // KV-cache block table
  int cached = 0;               // positions already in the KV cache
  StopMatcher matcher;
  SamplingRow row;
  Clock::time_point started;
  Clock::time_point first_token;
  bool finished = false;
  int sample = 0;  // which of the request's num_return_sequences completions it is
  int forks = 0;   // completions still to split off it once its prompt is cached
  std::optional<ConstraintState> constraint;  // GenerationRequest.constraint (a copy per fork)

  Sequence(size_t r, std::vector<int32_t> p, const GenerationRequest& req)
      : request(r), prompt(std::move(p)), matcher(req.stop.stop_strings), started(Clock::now()) {
    const SamplingOptions& o = req.sampling;
    row.temperature = o.temperature;
    row.top_k = o.top_k;
    row.top_p = o.top_p;
    row.min_p = o.min_p;
    row.repetition_penalty = o.repetition_penalty;
    row.presence_penalty = o.presence_penalty;
    row.frequency_penalty = o.frequency_penalty;
    row.seed = o.seed;
  }
};

class Run {
 public:
  Run(detail::SessionState& s, detail::SessionState* draft, std::span<const GenerationRequest> requests,
      const StreamCallback& cb)
      : s_(s), requests_(requests), callback_(cb), runner_(s), results_(requests.size()) {
    const Model& model = *s.model;
    eos_ = model.tokenizer().eos_id();
    for (size_t i = 0; i < requests.size(); ++i) {
      results_[i].prompt_ids = checked_prompt(requests[i], i, model, s.options);
      check_speculative(requests[i].speculative, i, model, draft != nullptr);
      check_beams_and_samples(requests[i], i, model, s.options);
      check_constraint_options(requests[i], i, model);
      if (requests[i].speculative.method == SpeculativeMethod::draft_model && !drafter_)
        drafter_ = std::make_unique<DraftModel>(*draft);
      if (requests[i].beam.num_beams > 1)
        beams_.push_back(i);
      else
        waiting_.push_back(i);
      if (requests[i].beam.num_beams == 1 && requests[i].num_return_sequences > 1)
        results_[i].sequences.resize(static_cast<size_t>(requests[i].num_return_sequences));
    }
    for (size_t i = 0; i < requests.size(); ++i)
      constraints_.push_back(compile_constraint(requests[i], i, model.tokenizer()));
  }

  ~Run() {  // also on an exception: every block goes back to the pool
    for (auto& seq : active_) s_.kv->release(seq.blocks);
  }

  std::vector<GenerationResult> run() {
    // Beam searches first, one at a time (their beams take num_beams slots).
    for (size_t r : beams_)
      results_[r] = beam_search(s_, runner_, requests_[r], results_[r].prompt_ids, r, callback_);
    while (!waiting_.empty() || !active_.empty()) {
      admit();
      prefill();
      decode();
      std::erase_if(active_, [](const Sequence& q) { return q.finished; });
    }
    for (GenerationResult& result : results_)  // several samples: completion 0 is the result's own
      if (!result.sequences.empty() && result.sequences[0].tokens.empty())
        result.sequences[0] = {result.tokens, result.text, result.finish, 0.0};
    return std::move(results_);
  }

 private:
  // Requests join as slots free up (continuous batching); one with n completions takes n.
  void admit() {
    while (!waiting_.empty()) {
      const size_t r = waiting_.front();
      const int n = requests_[r].num_return_sequences;
      if (static_cast<int>(active_.size()) + pending_forks_ + n > s_.options.max_sequences) return;
      waiting_.pop_front();
      Sequence& seq = active_.emplace_back(r, results_[r].prompt_ids, requests_[r]);
      seq.forks = n - 1;
      if (constraints_[r]) seq.constraint.emplace(constraints_[r], s_.model->tokenizer());
      pending_forks_ += n - 1;
    }
  }

  // Parallel sampling: once a request's prompt is cached, completions 1 .. n-1 split off
  // its sequence, sharing all its KV blocks (copied only when one writes into a shared
  // block), each sampling with seed + j from a copy of the parent's logits row `row`,
  // written to rows first_row, first_row + 1, ... (in the order returned).
  std::vector<Sequence*> fork(Sequence& parent, int row, int first_row) {
    std::vector<Sequence*> children;
    for (int j = 1; j <= parent.forks; ++j) {
      Sequence& child = active_.emplace_back(parent);
      child.blocks = s_.kv->share(parent.blocks);
      child.sample = j;
      child.forks = 0;
      child.row.seed = requests_[parent.request].sampling.seed + static_cast<uint64_t>(j);
      children.push_back(&child);
    }
    pending_forks_ -= parent.forks;
    parent.forks = 0;
    for (size_t k = 0; k < children.size(); ++k) runner_.duplicate_logits_row(row, first_row + static_cast<int>(k));
    return children;
  }

  // Where a sequence's tokens go: the result itself (completion 0) or result.sequences[j].
  std::vector<int32_t>& tokens_of(const Sequence& seq) {
    GenerationResult& result = results_[seq.request];
    return seq.sample == 0 ? result.tokens : result.sequences[seq.sample].tokens;
  }

  // Runs a step after the copy-on-write its reservations asked for.
  void run_step(std::span<const StepSlice> slices, bool generation) {
    runner_.copy_blocks(copies_);
    copies_.clear();
    runner_.run(slices, generation);
  }

  // Context phase: new prompts, packed up to max_step_tokens per step (long prompts in
  // chunks); a sequence samples its first token in the step that ends its prompt.
  void prefill() {
    for (;;) {
      std::vector<StepSlice> slices;
      std::vector<Sequence*> owners;
      int budget = s_.options.max_step_tokens;
      for (auto& seq : active_) {
        const int left = static_cast<int>(seq.prompt.size()) - seq.cached;
        if (seq.finished || left <= 0 || budget == 0) continue;
        const int n = std::min(left, budget);
        if (!reserve(seq, seq.cached + n)) continue;
        slices.push_back({seq.prompt.data() + seq.cached, n, seq.cached, &seq.blocks, n == left ? 1 : 0});
        owners.push_back(&seq);
        budget -= n;
      }
      if (slices.empty()) return;
      run_step(slices, /*generation=*/false);
      std::vector<Sequence*> sampled;
      for (size_t i = 0; i < slices.size(); ++i) {
        owners[i]->cached += slices[i].count;
        if (slices[i].logits > 0) sampled.push_back(owners[i]);
      }
      // Forks sample from copies of their parent's row, after the step's own rows.
      const size_t own_rows = sampled.size();
      for (size_t i = 0; i < own_rows; ++i)
        if (sampled[i]->forks > 0)
          for (Sequence* child : fork(*sampled[i], static_cast<int>(i), static_cast<int>(sampled.size())))
            sampled.push_back(child);
      sample_and_advance(sampled);
    }
  }

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

  // Generation phase: every running sequence gets one token, or, with speculative
  // decoding and a draft, the draft verified in one step (see verify()).
  void decode() {
    std::vector<Sequence*> plain;
    std::vector<Draft> drafts;
    std::vector<DraftModel::Job> jobs;
    for (auto& seq : active_) {
      const auto& generated = tokens_of(seq);
      if (seq.finished || generated.empty() || seq.cached < static_cast<int>(seq.prompt.size())) continue;
      const int budget = draft_budget(seq);
      if (budget == 0) {
        plain.push_back(&seq);
        continue;
      }
      Draft draft{&seq, history(seq), {}, {}};
      const SpeculativeOptions& o = requests_[seq.request].speculative;
      if (o.method == SpeculativeMethod::prompt_lookup)
        draft.tokens = prompt_lookup_draft(draft.history, o.ngram_min, o.ngram_max, budget);
      drafts.push_back(std::move(draft));
      if (o.method == SpeculativeMethod::draft_model) {
        DraftModel::Job job;
        job.key = seq.request;
        job.prompt_length = static_cast<int>(seq.prompt.size());
        job.row = seq.row;
        job.row.step = generated.size();
        job.count = budget;
        jobs.push_back(std::move(job));
      }
    }
    if (!jobs.empty()) {
      // Job histories point into `drafts`, which no longer grows.
      for (size_t i = 0, j = 0; i < drafts.size() && j < jobs.size(); ++i)
        if (drafts[i].seq->request == jobs[j].key) jobs[j++].history = drafts[i].history;
      drafter_->draft(jobs);
      for (size_t i = 0, j = 0; i < drafts.size() && j < jobs.size(); ++i)
        if (drafts[i].seq->request == jobs[j].key) {
          drafts[i].tokens = std::move(jobs[j].tokens);
          drafts[i].q = std::move(jobs[j++].q);
        }
    }
    std::erase_if(drafts, [&](Draft& d) {
      if (!d.tokens.empty()) return false;
      s_.kv->truncate(d.seq->blocks, d.seq->cached);  // nothing drafted: a plain step
      plain.push_back(d.seq);
      return true;
    });
    decode_plain(plain);
    verify(drafts);
  }

  void decode_plain(const std::vector<Sequence*>& seqs) {
    std::vector<StepSlice> slices;
    std::vector<Sequence*> owners;
    for (Sequence* seq : seqs) {
      if (!reserve(*seq, seq->cached + 1)) continue;
      slices.push_back({&tokens_of(*seq).back(), 1, seq->cached, &seq->blocks, 1});
      owners.push_back(seq);
    }
    if (slices.empty()) return;
    run_step(slices, /*generation=*/true);
    for (auto* seq : owners) seq->cached += 1;
    sample_and_advance(owners);
  }

  // How many tokens a sequence may draft this step: k, fewer when max_new_tokens is near
  // (a verification yields up to d + 1 tokens) or the step's buffers or the KV cache are
  // short. The blocks for the d + 1 positions are taken here.
  int draft_budget(Sequence& seq) {
    const GenerationRequest& request = requests_[seq.request];
    if (request.speculative.method == SpeculativeMethod::none) return 0;
    const int generated = static_cast<int>(tokens_of(seq).size());
    int d = std::min(request.speculative.num_draft_tokens, request.stop.max_new_tokens - generated - 1);
    d = std::min({d, s_.logit_rows - 1, s_.options.max_step_tokens - 1});
    const int room = (static_cast<int>(seq.blocks.size()) + s_.kv->free_blocks()) * s_.options.kv_block_size;
    d = std::min(d, room - seq.cached - 1);
    if (d <= 0) return 0;
    s_.kv->reserve(seq.blocks, seq.cached + 1 + d);
    return d;
  }

  std::vector<int32_t> history(const Sequence& seq) {
    std::vector<int32_t> h = seq.prompt;
    const auto& generated = tokens_of(seq);
    h.insert(h.end(), generated.begin(), generated.end());
    return h;
  }

  // Verification: each sequence's last token and its d drafted tokens go through the model
  // in one context step with logits at all d + 1 positions (as many sequences per step as
  // the logits rows and max_step_tokens allow), then the longest accepted prefix plus the
  // model's next token are appended, and the cache keeps only the accepted positions.
  void verify(std::vector<Draft>& drafts) {
    // Sequences accepted by sampling first: their rows are sampled in one call.
    std::stable_partition(drafts.begin(), drafts.end(), [](const Draft& d) { return d.by_sampling(); });
    for (size_t begin = 0; begin < drafts.size();) {
      size_t end = begin;
      int rows = 0;
      while (end < drafts.size()) {
        const int n = static_cast<int>(drafts[end].tokens.size()) + 1;
        if (rows + n > s_.logit_rows || rows + n > s_.options.max_step_tokens) break;
        rows += n;
        ++end;
      }
      verify_step(std::span(drafts).subspan(begin, end - begin), rows);
      begin = end;
    }
  }

  void verify_step(std::span<Draft> drafts, int rows) {
    std::vector<StepSlice> slices;
    for (Draft& d : drafts) {
      Sequence& seq = *d.seq;
      d.fed.assign(1, d.history.back());
      d.fed.insert(d.fed.end(), d.tokens.begin(), d.tokens.end());
      const int n = static_cast<int>(d.fed.size());
      slices.push_back({d.fed.data(), n, seq.cached, &seq.blocks, n});
    }
    run_step(slices, /*generation=*/false);

    // Full rule: the model's distributions at every position, read before sampling
    // (which applies penalties to the logits in place).
    const size_t V = static_cast<size_t>(s_.model->config().vocab_size);
    std::vector<float> logits;
    if (!drafts.back().by_sampling()) {
      logits.resize(static_cast<size_t>(rows) * V);
      runner_.read_logits(rows, logits.data());
    }
    // Compare rule: the model samples at each position as plain decoding would there (the
    // same history, step and draw), and the draft holds while the two agree.
    std::vector<std::vector<int32_t>> generated;  // per row: generated + drafted before it
    std::vector<SampleInput> inputs;
    for (const Draft& d : drafts) {
      if (!d.by_sampling()) break;
      const auto& done = tokens_of(*d.seq);
      for (size_t j = 0; j <= d.tokens.size(); ++j) {
        generated.emplace_back(done);
        generated.back().insert(generated.back().end(), d.tokens.begin(), d.tokens.begin() + j);
      }
    }
    for (size_t i = 0, row = 0; i < drafts.size() && drafts[i].by_sampling(); ++i)
      for (size_t j = 0; j <= drafts[i].tokens.size(); ++j, ++row) {
        SamplingRow r = drafts[i].seq->row;
        r.step = generated[row].size();
        inputs.push_back({r, drafts[i].seq->prompt, generated[row]});
      }
    const std::vector<int32_t> sampled = runner_.sample(inputs);

    std::vector<Sequence*> seqs;
    std::vector<std::vector<int32_t>> accepted_tokens;
    size_t row = 0;
    for (Draft& d : drafts) {
      Sequence& seq = *d.seq;
      const int n = static_cast<int>(d.tokens.size());
      Verdict verdict;
      if (d.by_sampling()) {
        while (verdict.accepted < n && sampled[row + verdict.accepted] == d.tokens[verdict.accepted]) ++verdict.accepted;
        verdict.next = sampled[row + verdict.accepted];
      } else {
        std::vector<std::vector<double>> p(static_cast<size_t>(n) + 1);
        std::vector<int32_t> h = d.history;
        for (int j = 0; j <= n; ++j) {
          sampling_distribution(std::span<const float>(logits.data() + (row + j) * V, V), seq.row, h,
                                static_cast<int>(seq.prompt.size()), p[j]);
          if (j < n) h.push_back(d.tokens[j]);
        }
        verdict = verify_draft(d.tokens, d.q, p, seq.row.seed, tokens_of(seq).size());
      }
      row += static_cast<size_t>(n) + 1;
      GenerationResult& result = results_[seq.request];
      result.drafted_tokens += n;
      result.accepted_tokens += verdict.accepted;
      // The cache keeps the last token and the accepted draft; rejected positions go.
      seq.cached += 1 + verdict.accepted;
      s_.kv->truncate(seq.blocks, seq.cached);
      if (drafter_ && requests_[seq.request].speculative.method == SpeculativeMethod::draft_model)
        drafter_->keep(seq.request, seq.cached);
      std::vector<int32_t> out(d.tokens.begin(), d.tokens.begin() + verdict.accepted);
      out.push_back(verdict.next);
      seqs.push_back(&seq);
      accepted_tokens.push_back(std::move(out));
    }
    advance_all(seqs, accepted_tokens);
  }

  // Takes KV blocks for `positions`; on exhaustion the request ends with an error.
  // A block shared with another completion of the request is copied before it is written.
  bool reserve(Sequence& seq, int positions) {
    try {
      s_.kv->reserve(seq.blocks, positions);
      const int bs = s_.options.kv_block_size;
      for (int p = seq.cached; p < positions; p = (p / bs + 1) * bs)
        if (auto copy = s_.kv->make_writable(seq.blocks, p)) copies_.push_back(*copy);
      return true;
    } catch (const Error& e) {
      if (e.category() != ErrorCategory::limit) throw;
      results_[seq.request].error = "request " + std::to_string(seq.request) + ": " + e.message();
      finish(seq, FinishReason::error, "");
      return false;
    }
  }

  void sample_and_advance(std::vector<Sequence*> seqs) {
    if (seqs.empty()) return;
    std::vector<SampleInput> inputs;
    for (auto* seq : seqs) {
      const auto& generated = tokens_of(*seq);
      seq->row.step = generated.size();
      inputs.push_back({seq->row, seq->prompt, generated});
    }
    std::vector<int32_t> tokens = runner_.sample(inputs);
    apply_constraints(seqs, tokens);
    std::vector<std::vector<int32_t>> per_seq;
    for (int32_t t : tokens) per_seq.push_back({t});
    advance_all(seqs, per_seq);
  }

  // Constrained decoding (decoding/constraint.h): the token of sequence i (logits row i) is
  // replaced by a draw from its masked row when its grammar refuses it; a sequence whose
  // grammar allows no token of the vocabulary ends with FinishReason::error.
  void apply_constraints(std::vector<Sequence*>& seqs, std::vector<int32_t>& tokens) {
    std::vector<float> row;
    bool dropped = false;
    for (size_t i = 0; i < seqs.size(); ++i) {
      Sequence& seq = *seqs[i];
      if (!seq.constraint || seq.constraint->allows(tokens[i])) continue;
      row.resize(static_cast<size_t>(s_.model->config().vocab_size));
      runner_.read_logits_row(static_cast<int>(i), row.data());
      if (const auto token = seq.constraint->choose(tokens[i], row, seq.row)) {
        tokens[i] = *token;
        continue;
      }
      results_[seq.request].error = "request " + std::to_string(seq.request) +
                                    ": the grammar allows no token of the vocabulary after the text generated so far";
      finish(seq, FinishReason::error, seq.matcher.text());
      dropped = true;
    }
    if (!dropped) return;
    size_t kept = 0;
    for (size_t i = 0; i < seqs.size(); ++i)
      if (!seqs[i]->finished) {
        seqs[kept] = seqs[i];
        tokens[kept++] = tokens[i];
      }
    seqs.resize(kept);
    tokens.resize(kept);
  }

  // Appends each sequence's new tokens in order, stopping at the first that finishes it or
  // that its callback cancels.
  void advance_all(const std::vector<Sequence*>& seqs, const std::vector<std::vector<int32_t>>& tokens) {
    std::vector<uint8_t> cancel(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i)
      for (int32_t token : tokens[i]) {
        cancel[i] = advance(*seqs[i], token) ? 1 : 0;
        if (cancel[i] || seqs[i]->finished) break;
      }
    // Every rank of a parallel run must retire the same sequences: rank 0's callback decides.
    if (callback_) runner_.agree_with_rank0(cancel);
    for (size_t i = 0; i < seqs.size(); ++i)
      if (cancel[i] && !seqs[i]->finished) finish(*seqs[i], FinishReason::cancelled, seqs[i]->matcher.text());
  }

  // Appends the token, streams it and finishes the sequence if a stop condition holds;
  // returns true when the callback asked to cancel a sequence that goes on otherwise.
  bool advance(Sequence& seq, int32_t token) {
    GenerationResult& result = results_[seq.request];
    const GenerationRequest& request = requests_[seq.request];
    std::vector<int32_t>& tokens = tokens_of(seq);
    if (tokens.empty()) {
      seq.first_token = Clock::now();
      if (seq.sample == 0) result.prompt_seconds = seconds_since(seq.started);
    }
    tokens.push_back(token);
    if (seq.constraint) seq.constraint->accept(token);

    std::optional<FinishReason> finish_reason;
    std::string piece;
    const auto& stops = request.stop.stop_token_ids;
    if ((request.stop.stop_at_eos && eos_ && token == *eos_) ||
        std::find(stops.begin(), stops.end(), token) != stops.end()) {
      finish_reason = FinishReason::stop_token;
    } else {
      // An embedding may have more rows than the tokenizer has tokens (padded
      // vocabularies): such a token has no text.
      const Tokenizer& tokenizer = s_.model->tokenizer();
      piece = seq.matcher.push(token < tokenizer.vocab_size() ? tokenizer.token_bytes(token) : std::string());
      if (seq.matcher.matched()) finish_reason = FinishReason::stop_string;
    }
    if (!finish_reason && seq.constraint && seq.constraint->must_end()) finish_reason = FinishReason::stop_token;
    if (!finish_reason && static_cast<int>(tokens.size()) >= request.stop.max_new_tokens)
      finish_reason = FinishReason::length;
    if (finish_reason) piece += seq.matcher.flush();

    const bool wants_cancel = callback_ && !callback_(StreamEvent{seq.request, token, piece, seq.sample});
    if (finish_reason) finish(seq, *finish_reason, seq.matcher.text());
    return wants_cancel && !finish_reason;
  }

  void finish(Sequence& seq, FinishReason reason, const std::string& text) {
    GenerationResult& result = results_[seq.request];
    if (seq.sample > 0) {
      result.sequences[seq.sample].finish = reason;
      result.sequences[seq.sample].text = text;
    } else {
      result.finish = reason;
      result.text = text;
      if (!result.tokens.empty()) result.decode_seconds = seconds_since(seq.first_token);
    }
    if (seq.forks > 0) pending_forks_ -= seq.forks;  // ended before its prompt did
    seq.forks = 0;
    seq.finished = true;
    s_.kv->release(seq.blocks);
    if (drafter_) drafter_->release(seq.request);
  }

  detail::SessionState& s_;
  std::span<const GenerationRequest> requests_;
  const StreamCallback& callback_;
  StepRunner runner_;
  std::vector<GenerationResult> results_;
  std::deque<size_t> waiting_;
  std::vector<size_t> beams_;  // requests with beam search
  std::deque<Sequence> active_;  // deque: pointers stay valid while sequences are added
  std::optional<int32_t> eos_;
  std::unique_ptr<DraftModel> drafter_;  // with a draft_model request
  int pending_forks_ = 0;                   // slots promised to completions not yet split off
  std::vector<std::pair<int32_t, int32_t>> copies_;  // copy-on-write before the next step
  std::vector<std::shared_ptr<const CompiledConstraint>> constraints_;  // per request; null: none
};

}  // namespace

Decoder::Decoder(Session& session) : session_(session) {}

Decoder::Decoder(Session& session, Session& draft) : session_(session), draft_(&draft) {
  const Model &target = session.model(), &small = draft.model();
  auto refuse = [](const std::string& what) {
    throw Error(ErrorCategory::invalid_argument, "Decoder: the draft session " + what);
  };
  if (&draft == &session) refuse("is the session itself: give the draft model its own session");
  if (small.config().vocab_size != target.config().vocab_size ||
      small.tokenizer().vocab_size() != target.tokenizer().vocab_size())
    refuse("has a vocabulary of " + std::to_string(small.config().vocab_size) + " (tokenizer " +
           std::to_string(small.tokenizer().vocab_size()) + ") but the model's is " +
           std::to_string(target.config().vocab_size) + " (tokenizer " +
           std::to_string(target.tokenizer().vocab_size()) + "): a draft model must share its tokenizer");
  if (draft.options().max_sequences < session.options().max_sequences)
    refuse("has SessionOptions.max_sequences = " + std::to_string(draft.options().max_sequences) +
           ", fewer than the session's " + std::to_string(session.options().max_sequences));
  if (draft.options().max_sequence_tokens < session.options().max_sequence_tokens)
    refuse("has SessionOptions.max_sequence_tokens = " + std::to_string(draft.options().max_sequence_tokens) +
           ", fewer than the session's " + std::to_string(session.options().max_sequence_tokens));
  for (const Model* m : {&target, &small})
    if (m->parallel().tensor_parallel * m->parallel().pipeline_parallel > 1)
      throw Error(ErrorCategory::unsupported,
                  "Decoder: speculative decoding with a draft model is not supported in a tensor / pipeline parallel run");
}

std::vector<GenerationResult> Decoder::generate(std::span<const GenerationRequest> requests,
                                                const StreamCallback& on_token) {
  return Run(session_.state(), draft_ ? &draft_->state() : nullptr, requests, on_token).run();
}

GenerationResult Decoder::generate(const GenerationRequest& request, const StreamCallback& on_token) {
  GenerationResult result = std::move(generate(std::span(&request, 1), on_token).front());
  if (result.finish == FinishReason::error) throw Error(ErrorCategory::limit, result.error);
  return result;
}

std::vector<float> Decoder::score(std::span<const int32_t> ids) {
  detail::SessionState& s = session_.state();
  const int vocab = s.model->config().vocab_size;
  const int n = static_cast<int>(ids.size());
  if (n == 0) throw Error(ErrorCategory::invalid_argument, "score: no tokens given");
  if (n > s.options.max_sequence_tokens)
    throw Error(ErrorCategory::limit, "score: " + std::to_string(n) +
                                          " tokens exceed SessionOptions.max_sequence_tokens " +
                                          std::to_string(s.options.max_sequence_tokens));
  for (int32_t id : ids)
    if (id < 0 || id >= vocab)
      throw Error(ErrorCategory::invalid_argument,
                  "score: token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");

  std::vector<float> logits(static_cast<size_t>(n) * vocab);
  std::vector<int32_t> blocks;
  StepRunner runner(s);
  const int chunk = std::min(s.logit_rows, s.options.max_step_tokens);
  try {
    for (int done = 0; done < n;) {
      const int count = std::min(chunk, n - done);
      s.kv->reserve(blocks, done + count);
      StepSlice slice{ids.data() + done, count, done, &blocks, count};
      runner.run(std::span(&slice, 1), /*generation=*/false);
      runner.read_logits(count, logits.data() + static_cast<size_t>(done) * vocab);
      done += count;
    }
  } catch (...) {
    s.kv->release(blocks);
    throw;
  }
  s.kv->release(blocks);
  return logits;
}

}  // namespace kestrel
