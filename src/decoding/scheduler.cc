#include "decoding/scheduler.h"

#include <algorithm>

#include "decoding/beam_search.h"
#include "decoding/logprobs.h"
#include "decoding/request_checks.h"
#include "decoding/speculative.h"
#include "kestrel/error.h"

namespace kestrel {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

Scheduler::Sequence::Sequence(std::shared_ptr<Job> j, size_t k)
    : job(std::move(j)), key(k), prompt(job->result.prompt_ids), matcher(job->request.stop.stop_strings),
      started(Clock::now()) {
  const SamplingOptions& o = job->request.sampling;
  row.temperature = o.temperature;
  row.top_k = o.top_k;
  row.top_p = o.top_p;
  row.min_p = o.min_p;
  row.repetition_penalty = o.repetition_penalty;
  row.presence_penalty = o.presence_penalty;
  row.frequency_penalty = o.frequency_penalty;
  row.seed = o.seed;
}

Scheduler::Scheduler(detail::SessionState& session, detail::SessionState* draft)
    : s_(session), draft_session_(draft), runner_(session), eos_(session.model->tokenizer().eos_id()) {}

Scheduler::~Scheduler() {
  for (auto& seq : active_) s_.kv->release(seq.blocks);
}

void Scheduler::check(Job& job, const detail::SessionState& session, bool has_draft) {
  const Model& model = *session.model;
  job.result.prompt_ids = checked_prompt(job.request, job.index, model, session.options);
  check_speculative(job.request.speculative, job.index, model, has_draft);
  check_beams_and_samples(job.request, job.index, model, session.options);
  check_constraint_options(job.request, job.index, model);
  check_output_options(job.request.output, job.index);
  job.constraint = compile_constraint(job.request, job.index, model.tokenizer());
  if (job.request.beam.num_beams == 1 && job.request.num_return_sequences > 1)
    job.result.sequences.resize(static_cast<size_t>(job.request.num_return_sequences));
}

void Scheduler::add(std::shared_ptr<Job> job) {
  if (job->request.speculative.method == SpeculativeMethod::draft_model && !drafter_)
    drafter_ = std::make_unique<DraftModel>(*draft_session_);
  waiting_.push_back(std::move(job));
}

void Scheduler::step() {
  cancel_requested();
  admit();
  prefill();
  decode();
  std::erase_if(active_, [](const Sequence& q) { return q.finished; });
}

// Jobs whose `cancelled` flag was set since the last step: running ones finish with
// FinishReason::cancelled and give their blocks back; waiting ones never start.
void Scheduler::cancel_requested() {
  for (auto& seq : active_)
    if (!seq.finished && seq.job->cancelled.load(std::memory_order_relaxed))
      finish(seq, FinishReason::cancelled, seq.matcher.text());
  std::erase_if(waiting_, [&](const std::shared_ptr<Job>& job) {
    if (!job->cancelled.load(std::memory_order_relaxed)) return false;
    job->result.finish = FinishReason::cancelled;
    complete(*job);
    return true;
  });
}

// Requests join in arrival order as slots free up (continuous batching); one with n
// completions takes n. A beam search takes the session alone: it waits for the running
// sequences to end, runs to completion, and the queue moves on.
void Scheduler::admit() {
  while (!waiting_.empty()) {
    const std::shared_ptr<Job> job = waiting_.front();
    const GenerationRequest& request = job->request;
    if (request.beam.num_beams > 1) {
      if (!active_.empty()) return;
      waiting_.pop_front();
      const StreamCallback on_token = [&](const StreamEvent& event) { return stream(*job, event); };
      job->result = beam_search(s_, runner_, request, job->result.prompt_ids, job->index, on_token);
      complete(*job);
      continue;
    }
    const int n = request.num_return_sequences;
    if (static_cast<int>(active_.size()) + pending_forks_ + n > s_.options.max_sequences) return;
    waiting_.pop_front();
    job->live = n;
    Sequence& seq = active_.emplace_back(job, next_id_++);
    seq.forks = n - 1;
    if (job->constraint) seq.constraint.emplace(job->constraint, s_.model->tokenizer());
    pending_forks_ += n - 1;
    if (s_.options.prefix_caching) {
      seq.cached = s_.kv->match_prefix(seq.prompt, seq.blocks);
      job->result.cached_prompt_tokens = seq.cached;
    }
  }
}

// Streams one event to the job's callback; false when the job is to be cancelled.
bool Scheduler::stream(Job& job, const StreamEvent& event) {
  if (job.cancelled.load(std::memory_order_relaxed)) return false;
  return !job.on_token || job.on_token(event);
}

// The result is final: with several samples, completion 0 is the result's own.
void Scheduler::complete(Job& job) {
  GenerationResult& result = job.result;
  if (!result.sequences.empty() && result.sequences[0].tokens.empty())
    result.sequences[0] = {result.tokens, result.text, result.finish, 0.0, result.logprobs};
  if (job.on_finished) job.on_finished(job);
}

void Scheduler::cancel_all() {
  for (auto& seq : active_) seq.job->cancelled.store(true, std::memory_order_relaxed);
  for (const auto& job : waiting_) job->cancelled.store(true, std::memory_order_relaxed);
  cancel_requested();
  std::erase_if(active_, [](const Sequence& q) { return q.finished; });
}

void Scheduler::abort_all(const std::string& message) {
  for (auto& seq : active_)
    if (!seq.finished) {
      seq.job->result.error = message;
      finish(seq, FinishReason::error, seq.matcher.text());
    }
  active_.clear();
  pending_forks_ = 0;
  copies_.clear();
  for (const std::shared_ptr<Job>& job : waiting_) {
    job->result.finish = FinishReason::error;
    job->result.error = message;
    complete(*job);
  }
  waiting_.clear();
}

// Parallel sampling: once a request's prompt is cached, completions 1 .. n-1 split off
// its sequence, sharing all its KV blocks (copied only when one writes into a shared
// block), each sampling with seed + j from a copy of the parent's logits row `row`,
// written to rows first_row, first_row + 1, ... (in the order returned).
std::vector<Scheduler::Sequence*> Scheduler::fork(Sequence& parent, int row, int first_row) {
  std::vector<Sequence*> children;
  for (int j = 1; j <= parent.forks; ++j) {
    Sequence& child = active_.emplace_back(parent);
    child.blocks = s_.kv->share(parent.blocks);
    child.sample = j;
    child.forks = 0;
    child.row.seed = parent.job->request.sampling.seed + static_cast<uint64_t>(j);
    children.push_back(&child);
  }
  pending_forks_ -= parent.forks;
  parent.forks = 0;
  for (size_t k = 0; k < children.size(); ++k) runner_.duplicate_logits_row(row, first_row + static_cast<int>(k));
  return children;
}

// Where a sequence's tokens go: the result itself (completion 0) or result.sequences[j].
std::vector<int32_t>& Scheduler::tokens_of(const Sequence& seq) {
  GenerationResult& result = seq.job->result;
  return seq.sample == 0 ? result.tokens : result.sequences[seq.sample].tokens;
}

std::vector<TokenLogprobs>& Scheduler::logprobs_of(const Sequence& seq) {
  GenerationResult& result = seq.job->result;
  return seq.sample == 0 ? result.logprobs : result.sequences[seq.sample].logprobs;
}

std::vector<float> Scheduler::logits_for_logprobs(bool wanted, int rows) {
  std::vector<float> logits;
  if (!wanted || rows == 0) return logits;
  logits.resize(static_cast<size_t>(rows) * static_cast<size_t>(s_.model->config().vocab_size));
  runner_.read_logits(rows, logits.data());
  return logits;
}

namespace {
bool wants_logprobs(const Job& job) { return job.request.output.logprobs; }
}  // namespace

// Runs a step after the copy-on-write its reservations asked for.
void Scheduler::run_step(std::span<const StepSlice> slices, bool generation) {
  runner_.copy_blocks(copies_);
  copies_.clear();
  runner_.run(slices, generation);
}

// Context phase: one step of prompt chunks, packed up to max_step_tokens in admission
// order (a long prompt takes several steps); a sequence samples its first token in the
// step that ends its prompt.
void Scheduler::prefill() {
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
    if (s_.options.prefix_caching) s_.kv->publish(owners[i]->blocks, owners[i]->prompt, owners[i]->cached);
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

// Generation phase: every running sequence gets one token, or, with speculative
// decoding and a draft, the draft verified in one step (see verify()).
void Scheduler::decode() {
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
    const SpeculativeOptions& o = seq.job->request.speculative;
    if (o.method == SpeculativeMethod::prompt_lookup)
      draft.tokens = prompt_lookup_draft(draft.history, o.ngram_min, o.ngram_max, budget);
    drafts.push_back(std::move(draft));
    if (o.method == SpeculativeMethod::draft_model) {
      DraftModel::Job job;
      job.key = seq.key;
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
      if (drafts[i].seq->key == jobs[j].key) jobs[j++].history = drafts[i].history;
    drafter_->draft(jobs);
    for (size_t i = 0, j = 0; i < drafts.size() && j < jobs.size(); ++i)
      if (drafts[i].seq->key == jobs[j].key) {
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

void Scheduler::decode_plain(const std::vector<Sequence*>& seqs) {
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
int Scheduler::draft_budget(Sequence& seq) {
  const GenerationRequest& request = seq.job->request;
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

std::vector<int32_t> Scheduler::history(const Sequence& seq) {
  std::vector<int32_t> h = seq.prompt;
  const auto& generated = tokens_of(seq);
  h.insert(h.end(), generated.begin(), generated.end());
  return h;
}

// Verification: each sequence's last token and its d drafted tokens go through the model
// in one context step with logits at all d + 1 positions (as many sequences per step as
// the logits rows and max_step_tokens allow), then the longest accepted prefix plus the
// model's next token are appended, and the cache keeps only the accepted positions.
void Scheduler::verify(std::vector<Draft>& drafts) {
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

void Scheduler::verify_step(std::span<Draft> drafts, int rows) {
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
  const bool any_logprobs =
      std::any_of(drafts.begin(), drafts.end(), [](const Draft& d) { return wants_logprobs(*d.seq->job); });
  const std::vector<float> logits = logits_for_logprobs(any_logprobs || !drafts.back().by_sampling(), rows);
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
  std::vector<std::vector<TokenLogprobs>> accepted_logprobs;
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
    std::vector<int32_t> out(d.tokens.begin(), d.tokens.begin() + verdict.accepted);
    out.push_back(verdict.next);
    std::vector<TokenLogprobs> out_logprobs;
    if (wants_logprobs(*seq.job))
      for (size_t j = 0; j < out.size(); ++j) {
        const std::span<const float> r(logits.data() + (row + j) * V, V);
        out_logprobs.push_back(RowLogprobs(r, seq.job->request.output.top_logprobs).of(r, out[j]));
      }
    row += static_cast<size_t>(n) + 1;
    GenerationResult& result = seq.job->result;
    result.drafted_tokens += n;
    result.accepted_tokens += verdict.accepted;
    // The cache keeps the last token and the accepted draft; rejected positions go.
    seq.cached += 1 + verdict.accepted;
    s_.kv->truncate(seq.blocks, seq.cached);
    if (drafter_ && seq.job->request.speculative.method == SpeculativeMethod::draft_model)
      drafter_->keep(seq.key, seq.cached);
    seqs.push_back(&seq);
    accepted_tokens.push_back(std::move(out));
    accepted_logprobs.push_back(std::move(out_logprobs));
  }
  advance_all(seqs, accepted_tokens, accepted_logprobs);
}

// Takes KV blocks for `positions`; on exhaustion the request ends with an error.
// A block shared with another completion of the request is copied before it is written.
bool Scheduler::reserve(Sequence& seq, int positions) {
  try {
    s_.kv->reserve(seq.blocks, positions);
    const int bs = s_.options.kv_block_size;
    for (int p = seq.cached; p < positions; p = (p / bs + 1) * bs)
      if (auto copy = s_.kv->make_writable(seq.blocks, p)) copies_.push_back(*copy);
    return true;
  } catch (const Error& e) {
    if (e.category() != ErrorCategory::limit) throw;
    seq.job->result.error = "request " + std::to_string(seq.job->index) + ": " + e.message();
    finish(seq, FinishReason::error, "");
    return false;
  }
}

void Scheduler::sample_and_advance(std::vector<Sequence*> seqs) {
  if (seqs.empty()) return;
  std::vector<SampleInput> inputs;
  for (auto* seq : seqs) {
    const auto& generated = tokens_of(*seq);
    seq->row.step = generated.size();
    inputs.push_back({seq->row, seq->prompt, generated});
  }
  // Sequence i samples from logits row i. Log-probabilities: each wanted row's normalizer and
  // top tokens before sampling; the token's own after it (a grammar may redraw it).
  const bool any_logprobs = std::any_of(seqs.begin(), seqs.end(), [](const Sequence* q) { return wants_logprobs(*q->job); });
  const std::vector<float> logits = logits_for_logprobs(any_logprobs, static_cast<int>(seqs.size()));
  const size_t V = static_cast<size_t>(s_.model->config().vocab_size);
  std::vector<std::optional<RowLogprobs>> row_logprobs(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i)
    if (wants_logprobs(*seqs[i]->job))
      row_logprobs[i].emplace(std::span<const float>(logits.data() + i * V, V), seqs[i]->job->request.output.top_logprobs);
  const std::vector<Sequence*> rows = seqs;
  std::vector<int32_t> tokens = runner_.sample(inputs);
  apply_constraints(seqs, tokens);  // may drop sequences (kept in order)
  std::vector<std::vector<int32_t>> per_seq;
  std::vector<std::vector<TokenLogprobs>> per_seq_logprobs(seqs.size());
  for (size_t i = 0, r = 0; i < seqs.size(); ++i, ++r) {
    while (rows[r] != seqs[i]) ++r;
    per_seq.push_back({tokens[i]});
    if (row_logprobs[r])
      per_seq_logprobs[i].push_back(row_logprobs[r]->of(std::span<const float>(logits.data() + r * V, V), tokens[i]));
  }
  advance_all(seqs, per_seq, per_seq_logprobs);
}

// Constrained decoding (decoding/constraint.h): the token of sequence i (logits row i) is
// replaced by a draw from its masked row when its grammar refuses it; a sequence whose
// grammar allows no token of the vocabulary ends with FinishReason::error.
void Scheduler::apply_constraints(std::vector<Sequence*>& seqs, std::vector<int32_t>& tokens) {
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
    seq.job->result.error = "request " + std::to_string(seq.job->index) +
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
void Scheduler::advance_all(const std::vector<Sequence*>& seqs, const std::vector<std::vector<int32_t>>& tokens,
                            const std::vector<std::vector<TokenLogprobs>>& logprobs) {
  std::vector<uint8_t> cancel(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i)
    for (size_t j = 0; j < tokens[i].size(); ++j) {
      const int32_t token = tokens[i][j];
      cancel[i] = advance(*seqs[i], token, j < logprobs[i].size() ? &logprobs[i][j] : nullptr) ? 1 : 0;
      if (cancel[i] || seqs[i]->finished) break;
    }
  // Every rank of a parallel run must retire the same sequences: rank 0's callback decides.
  // (Every rank has the same requests, so all of them agree on whether to ask.)
  if (std::any_of(seqs.begin(), seqs.end(), [](const Sequence* q) { return static_cast<bool>(q->job->on_token); }))
    runner_.agree_with_rank0(cancel);
  for (size_t i = 0; i < seqs.size(); ++i)
    if (cancel[i] && !seqs[i]->finished) finish(*seqs[i], FinishReason::cancelled, seqs[i]->matcher.text());
}

// Appends the token, streams it and finishes the sequence if a stop condition holds;
// returns true when the callback asked to cancel a sequence that goes on otherwise.
bool Scheduler::advance(Sequence& seq, int32_t token, const TokenLogprobs* logprobs) {
  GenerationResult& result = seq.job->result;
  const GenerationRequest& request = seq.job->request;
  std::vector<int32_t>& tokens = tokens_of(seq);
  if (tokens.empty()) {
    seq.first_token = Clock::now();
    if (seq.sample == 0) result.prompt_seconds = seconds_since(seq.started);
  }
  tokens.push_back(token);
  if (logprobs) logprobs_of(seq).push_back(*logprobs);
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

  const bool wants_cancel = !stream(*seq.job, StreamEvent{seq.job->index, token, piece, seq.sample, logprobs});
  if (finish_reason) finish(seq, *finish_reason, seq.matcher.text());
  return wants_cancel && !finish_reason;
}

void Scheduler::finish(Sequence& seq, FinishReason reason, const std::string& text) {
  GenerationResult& result = seq.job->result;
  if (seq.sample > 0) {
    result.sequences[seq.sample].finish = reason;
    result.sequences[seq.sample].text = text;
  } else {
    result.finish = reason;
    result.text = text;
    if (!result.tokens.empty()) result.decode_seconds = seconds_since(seq.first_token);
  }
  if (seq.forks > 0) pending_forks_ -= seq.forks;  // ended before its prompt did
  seq.job->live -= 1 + seq.forks;
  seq.forks = 0;
  seq.finished = true;
  // The output's positions too: a chat's next turn starts with this whole history.
  if (s_.options.prefix_caching) s_.kv->publish(seq.blocks, history(seq), seq.cached);
  s_.kv->release(seq.blocks);
  if (drafter_) drafter_->release(seq.key);
  if (seq.job->live == 0) complete(*seq.job);
}


}  // namespace kestrel
