#include "kestrel/decoder.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>

#include "core/session_state.h"
#include "decoding/request_checks.h"
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
  Run(detail::SessionState& s, std::span<const GenerationRequest> requests, const StreamCallback& cb)
      : s_(s), requests_(requests), callback_(cb), runner_(s), results_(requests.size()) {
    const Model& model = *s.model;
    eos_ = model.tokenizer().eos_id();
    for (size_t i = 0; i < requests.size(); ++i) {
      results_[i].prompt_ids = checked_prompt(requests[i], i, model, s.options);
      waiting_.push_back(i);
    }
  }

  ~Run() {  // also on an exception: every block goes back to the pool
    for (auto& seq : active_) s_.kv->release(seq.blocks);
  }

  std::vector<GenerationResult> run() {
    while (!waiting_.empty() || !active_.empty()) {
      admit();
      prefill();
      decode();
      std::erase_if(active_, [](const Sequence& q) { return q.finished; });
    }
    return std::move(results_);
  }

 private:
  // Requests join as slots free up (continuous batching).
  void admit() {
    while (!waiting_.empty() && static_cast<int>(active_.size()) < s_.options.max_sequences) {
      size_t r = waiting_.front();
      waiting_.pop_front();
      active_.emplace_back(r, results_[r].prompt_ids, requests_[r]);
    }
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
        slices.push_back({seq.prompt.data() + seq.cached, n, seq.cached, &seq.blocks, n == left});
        owners.push_back(&seq);
        budget -= n;
      }
      if (slices.empty()) return;
      runner_.run(slices, /*generation=*/false);
      std::vector<Sequence*> sampled;
      for (size_t i = 0; i < slices.size(); ++i) {
        owners[i]->cached += slices[i].count;
        if (slices[i].wants_logits) sampled.push_back(owners[i]);
      }
      sample_and_advance(sampled);
    }
  }

  // Generation phase: one token for every running sequence.
  void decode() {
    std::vector<StepSlice> slices;
    std::vector<Sequence*> owners;
    for (auto& seq : active_) {
      const auto& generated = results_[seq.request].tokens;
      if (seq.finished || generated.empty() || seq.cached < static_cast<int>(seq.prompt.size())) continue;
      if (!reserve(seq, seq.cached + 1)) continue;
      slices.push_back({&generated.back(), 1, seq.cached, &seq.blocks, true});
      owners.push_back(&seq);
    }
    if (slices.empty()) return;
    runner_.run(slices, /*generation=*/true);
    for (auto* seq : owners) seq->cached += 1;
    sample_and_advance(owners);
  }

  // Takes KV blocks for `positions`; on exhaustion the request ends with an error.
  bool reserve(Sequence& seq, int positions) {
    try {
      s_.kv->reserve(seq.blocks, positions);
      return true;
    } catch (const Error& e) {
      if (e.category() != ErrorCategory::limit) throw;
      results_[seq.request].error = "request " + std::to_string(seq.request) + ": " + e.message();
      finish(seq, FinishReason::error, "");
      return false;
    }
  }

  void sample_and_advance(const std::vector<Sequence*>& seqs) {
    if (seqs.empty()) return;
    std::vector<SampleInput> inputs;
    for (auto* seq : seqs) {
      const auto& generated = results_[seq->request].tokens;
      seq->row.step = generated.size();
      inputs.push_back({seq->row, seq->prompt, generated});
    }
    std::vector<int32_t> tokens = runner_.sample(inputs);
    std::vector<uint8_t> cancel(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) cancel[i] = advance(*seqs[i], tokens[i]) ? 1 : 0;
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
    if (result.tokens.empty()) {
      seq.first_token = Clock::now();
      result.prompt_seconds = seconds_since(seq.started);
    }
    result.tokens.push_back(token);

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
    if (!finish_reason && static_cast<int>(result.tokens.size()) >= request.stop.max_new_tokens)
      finish_reason = FinishReason::length;
    if (finish_reason) piece += seq.matcher.flush();

    const bool wants_cancel = callback_ && !callback_(StreamEvent{seq.request, token, piece});
    if (finish_reason) finish(seq, *finish_reason, seq.matcher.text());
    return wants_cancel && !finish_reason;
  }

  void finish(Sequence& seq, FinishReason reason, const std::string& text) {
    GenerationResult& result = results_[seq.request];
    result.finish = reason;
    result.text = text;
    if (!result.tokens.empty()) result.decode_seconds = seconds_since(seq.first_token);
    seq.finished = true;
    s_.kv->release(seq.blocks);
  }

  detail::SessionState& s_;
  std::span<const GenerationRequest> requests_;
  const StreamCallback& callback_;
  StepRunner runner_;
  std::vector<GenerationResult> results_;
  std::deque<size_t> waiting_;
  std::deque<Sequence> active_;  // deque: pointers stay valid while sequences are added
  std::optional<int32_t> eos_;
};

}  // namespace

Decoder::Decoder(Session& session) : session_(session) {}

std::vector<GenerationResult> Decoder::generate(std::span<const GenerationRequest> requests,
                                                const StreamCallback& on_token) {
  return Run(session_.state(), requests, on_token).run();
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
      StepSlice slice{ids.data() + done, count, done, &blocks, true};
      runner.run(std::span(&slice, 1), /*generation=*/false, /*all_logits=*/true);
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
