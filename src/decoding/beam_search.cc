#include "decoding/beam_search.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "decoding/stop_matcher.h"
#include "kestrel/error.h"

namespace kestrel {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Hypothesis {
  double score = 0.0;           // sum of log-probs / generated_length ^ length_penalty
  std::vector<int32_t> tokens;  // generated, without the stop token
  int32_t stop = -1;            // the stop token that ended it; -1: cut at max_new_tokens
};

// The n best finished hypotheses (transformers' BeamHypotheses, n = num_beams).
class Hypotheses {
 public:
  Hypotheses(const BeamSearchOptions& o, int max_new_tokens) : o_(o), max_new_tokens_(max_new_tokens) {}

  void add(std::vector<int32_t> tokens, double sum_logprobs, int generated_length, int32_t stop) {
    const double score = sum_logprobs / std::pow(static_cast<double>(generated_length), o_.length_penalty);
    if (static_cast<int>(list_.size()) >= o_.num_beams && score <= worst_) return;
    list_.push_back({score, std::move(tokens), stop});
    if (static_cast<int>(list_.size()) > o_.num_beams) {
      // Drop the worst (the first in the list on ties, as Python's sort of (score, index)).
      size_t worst = 0, second = 1;
      for (size_t i = 1; i < list_.size(); ++i)
        if (list_[i].score < list_[worst].score) worst = i;
      second = worst == 0 ? 1 : 0;
      for (size_t i = 0; i < list_.size(); ++i)
        if (i != worst && list_[i].score < list_[second].score) second = i;
      worst_ = list_[second].score;
      list_.erase(list_.begin() + static_cast<std::ptrdiff_t>(worst));
    } else {
      worst_ = std::min(score, worst_);
    }
  }

  // Whether no running beam can improve the list any more. `best_sum` is the best sum of
  // log-probs among this step's candidates, `length` the generated length they have.
  bool done(double best_sum, int length) const {
    if (static_cast<int>(list_.size()) < o_.num_beams) return false;
    switch (o_.early_stopping) {
      case EarlyStopping::enough: return true;
      case EarlyStopping::heuristic: return worst_ >= best_sum / std::pow(length, o_.length_penalty);
      case EarlyStopping::never: {
        const int at = o_.length_penalty > 0.0f ? max_new_tokens_ : length;
        return worst_ >= best_sum / std::pow(at, o_.length_penalty);
      }
    }
    return false;
  }

  // Best first; among equal scores the later-added first (Python's stable sort, popped
  // from the end).
  std::vector<Hypothesis> best(int n) {
    std::stable_sort(list_.begin(), list_.end(), [](const Hypothesis& a, const Hypothesis& b) { return a.score < b.score; });
    std::vector<Hypothesis> out;
    for (int i = 0; i < n && !list_.empty(); ++i) {
      out.push_back(std::move(list_.back()));
      list_.pop_back();
    }
    return out;
  }

 private:
  const BeamSearchOptions& o_;
  int max_new_tokens_;
  std::vector<Hypothesis> list_;
  double worst_ = 1e9;
};

struct Beam {
  std::vector<int32_t> tokens;  // generated so far
  std::vector<int32_t> blocks;  // KV block table, shared with other beams where they agree
  double score = 0.0;           // sum of log-probs
  int row = 0;                  // its logits row in the last step
};

struct Candidate {
  double score;
  int64_t flat;  // beam * V + token
};

class BeamSearch {
 public:
  BeamSearch(detail::SessionState& s, StepRunner& runner, const GenerationRequest& request,
             const std::vector<int32_t>& prompt)
      : s_(s), runner_(runner), request_(request), o_(request.beam), prompt_(prompt),
        hypotheses_(request.beam, request.stop.max_new_tokens), V_(s.model->config().vocab_size) {
    const auto eos = s.model->tokenizer().eos_id();
    if (request.stop.stop_at_eos && eos) stops_.push_back(*eos);
    for (int32_t t : request.stop.stop_token_ids)
      if (std::find(stops_.begin(), stops_.end(), t) == stops_.end()) stops_.push_back(t);
  }

  ~BeamSearch() {
    for (Beam& beam : beams_) s_.kv->release(beam.blocks);
  }

  GenerationResult run() {
    GenerationResult result;
    result.prompt_ids = prompt_;
    const auto started = Clock::now();
    prefill();
    const auto first = Clock::now();
    result.prompt_seconds = seconds_since(started);
    bool done = false;
    for (int generated = 1;; ++generated) {
      done = select(generated);
      if (done || generated == request_.stop.max_new_tokens) break;
      step(generated);
    }
    // Beams still running at max_new_tokens compete with the finished hypotheses.
    if (!done)
      for (Beam& beam : beams_)
        hypotheses_.add(beam.tokens, beam.score, static_cast<int>(beam.tokens.size()), -1);
    const Tokenizer& tokenizer = s_.model->tokenizer();
    for (Hypothesis& h : hypotheses_.best(request_.num_return_sequences)) {
      GeneratedSequence seq;
      for (int32_t t : h.tokens)
        if (t < tokenizer.vocab_size()) seq.text += tokenizer.token_bytes(t);
      seq.tokens = std::move(h.tokens);
      if (h.stop >= 0) seq.tokens.push_back(h.stop);
      seq.finish = h.stop >= 0 ? FinishReason::stop_token : FinishReason::length;
      seq.score = h.score;
      result.sequences.push_back(std::move(seq));
    }
    result.tokens = result.sequences.front().tokens;
    result.text = result.sequences.front().text;
    result.finish = result.sequences.front().finish;
    result.decode_seconds = seconds_since(first);
    return result;
  }

 private:
  // The prompt once (in chunks of max_step_tokens); every beam starts from its blocks.
  void prefill() {
    const int n = static_cast<int>(prompt_.size());
    beams_.resize(static_cast<size_t>(o_.num_beams));
    std::vector<int32_t>& blocks = beams_[0].blocks;
    for (int done = 0; done < n;) {
      const int count = std::min(s_.options.max_step_tokens, n - done);
      s_.kv->reserve(blocks, done + count);
      StepSlice slice{prompt_.data() + done, count, done, &blocks, done + count == n ? 1 : 0};
      runner_.run(std::span(&slice, 1), /*generation=*/false);
      done += count;
    }
    logits_.resize(V_);
    runner_.read_logits(1, logits_.data());
    // As in transformers: identical beams, all but the first scored -1e9 so that the
    // first step extends only one of them.
    for (size_t b = 1; b < beams_.size(); ++b) {
      beams_[b].blocks = s_.kv->share(blocks);
      beams_[b].score = -1e9;
    }
  }

  // Picks the next beams from the 2N (more with several stop tokens) best continuations;
  // returns whether the search is done. `generated`: tokens each beam has after this.
  bool select(int generated) {
    const int N = o_.num_beams;
    const int keep = std::max(2, 1 + static_cast<int>(stops_.size())) * N;
    std::vector<Candidate> candidates;
    std::vector<double> logp(V_);
    for (int b = 0; b < N; ++b) {
      // log_softmax and the running sums in f32, as transformers computes them: a score
      // then differs from its by the logits' own error, not by its f32 rounding.
      const float* l = logits_.data() + static_cast<size_t>(beams_[b].row) * V_;
      const float m = *std::max_element(l, l + V_);
      double sum = 0.0;
      for (int t = 0; t < V_; ++t) sum += std::exp(static_cast<double>(l[t] - m));
      const float log_sum = static_cast<float>(std::log(sum));
      const float score = static_cast<float>(beams_[b].score);
      std::vector<Candidate> mine(static_cast<size_t>(V_));
      for (int t = 0; t < V_; ++t) mine[t] = {static_cast<double>(score + ((l[t] - m) - log_sum)), int64_t{b} * V_ + t};
      const int k = std::min(keep, V_);
      std::partial_sort(mine.begin(), mine.begin() + k, mine.end(), better);
      candidates.insert(candidates.end(), mine.begin(), mine.begin() + k);
    }
    const int k = std::min(keep, static_cast<int>(candidates.size()));
    std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end(), better);

    std::vector<Beam> next;
    for (int rank = 0; rank < k && static_cast<int>(next.size()) < N; ++rank) {
      const Candidate& c = candidates[rank];
      const Beam& parent = beams_[static_cast<size_t>(c.flat / V_)];
      const int32_t token = static_cast<int32_t>(c.flat % V_);
      if (std::find(stops_.begin(), stops_.end(), token) != stops_.end()) {
        if (rank >= N) continue;  // a stop below the N best does not finish a hypothesis
        hypotheses_.add(parent.tokens, c.score, generated, token);
        continue;
      }
      Beam beam;
      beam.tokens = parent.tokens;
      beam.tokens.push_back(token);
      beam.blocks = s_.kv->share(parent.blocks);
      beam.score = c.score;
      next.push_back(std::move(beam));
    }
    for (Beam& beam : beams_) s_.kv->release(beam.blocks);
    beams_ = std::move(next);
    if (static_cast<int>(beams_.size()) < N)
      throw Error(ErrorCategory::internal, "beam search: fewer continuations than beams");
    return hypotheses_.done(candidates.front().score, generated);
  }

  // Feeds every beam's last token; a beam about to write into a block it shares with
  // another gets its own copy of that block first.
  void step(int generated) {
    const int position = static_cast<int>(prompt_.size()) + generated - 1;
    std::vector<std::pair<int32_t, int32_t>> copies;
    std::vector<StepSlice> slices;
    for (size_t b = 0; b < beams_.size(); ++b) {
      Beam& beam = beams_[b];
      s_.kv->reserve(beam.blocks, position + 1);
      if (auto copy = s_.kv->make_writable(beam.blocks, position)) copies.push_back(*copy);
      slices.push_back({&beam.tokens.back(), 1, position, &beam.blocks, 1});
      beam.row = static_cast<int>(b);
    }
    runner_.copy_blocks(copies);
    runner_.run(slices, /*generation=*/true);
    logits_.resize(beams_.size() * static_cast<size_t>(V_));
    runner_.read_logits(static_cast<int>(beams_.size()), logits_.data());
  }

  // Higher score first; the lower beam * V + token on ties.
  static bool better(const Candidate& a, const Candidate& b) {
    return a.score > b.score || (a.score == b.score && a.flat < b.flat);
  }

  detail::SessionState& s_;
  StepRunner& runner_;
  const GenerationRequest& request_;
  const BeamSearchOptions& o_;
  const std::vector<int32_t>& prompt_;
  Hypotheses hypotheses_;
  int V_;
  std::vector<int32_t> stops_;
  std::vector<Beam> beams_;
  std::vector<float> logits_;  // [beams, V] of the last step (one row after the prompt)
};

}  // namespace

GenerationResult beam_search(detail::SessionState& session, StepRunner& runner, const GenerationRequest& request,
                             const std::vector<int32_t>& prompt, size_t index, const StreamCallback& on_token) {
  GenerationResult result;
  try {
    result = BeamSearch(session, runner, request, prompt).run();
  } catch (const Error& e) {
    if (e.category() != ErrorCategory::limit) throw;
    result = GenerationResult{};
    result.prompt_ids = prompt;
    result.finish = FinishReason::error;
    result.error = "request " + std::to_string(index) + ": " + e.message();
    return result;
  }
  if (on_token) {
    const Tokenizer& tokenizer = session.model->tokenizer();
    StopMatcher matcher({});
    const auto& tokens = result.tokens;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const bool stop = i + 1 == tokens.size() && result.finish == FinishReason::stop_token;
      std::string piece = stop || tokens[i] >= tokenizer.vocab_size() ? "" : matcher.push(tokenizer.token_bytes(tokens[i]));
      if (i + 1 == tokens.size()) piece += matcher.flush();
      on_token(StreamEvent{index, tokens[i], piece});
    }
  }
  return result;
}

}  // namespace kestrel
