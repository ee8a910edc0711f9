#include "kestrel/decoder.h"

#include <algorithm>
#include <memory>

#include "core/session_state.h"
#include "decoding/scheduler.h"
#include "decoding/step_runner.h"
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

// The calling thread drives the scheduler until every request has finished; in a parallel
// run every rank does so in lockstep with the same requests.
std::vector<GenerationResult> Decoder::generate(std::span<const GenerationRequest> requests,
                                                const StreamCallback& on_token) {
  detail::SessionState& s = session_.state();
  std::vector<std::shared_ptr<Job>> jobs;
  for (size_t i = 0; i < requests.size(); ++i) {
    auto job = std::make_shared<Job>();
    job->index = i;
    job->request = requests[i];
    job->on_token = on_token;
    Scheduler::check(*job, s, draft_ != nullptr);
    jobs.push_back(std::move(job));
  }
  Scheduler scheduler(s, draft_ ? &draft_->state() : nullptr);
  for (const auto& job : jobs) scheduler.add(job);
  while (!scheduler.idle()) scheduler.step();
  std::vector<GenerationResult> results;
  for (const auto& job : jobs) results.push_back(std::move(job->result));
  return results;
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
