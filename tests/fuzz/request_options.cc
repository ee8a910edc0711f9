// Fuzz target: the sampling and stop options a request carries. Each input is one
// GenerationRequest (raw floats and ints, so NaN, infinities, denormals and extremes all
// occur); request validation (decoding/request_checks) must refuse bad ones with an
// Error, and a request it accepts must then generate without fault on a fixture model:
// tokens in the vocabulary, a finish reason, no sanitizer finding. Generation is capped
// at a few tokens of a short prompt so that a run does many requests per second.
#include <algorithm>
#include <memory>

#include "decoding/request_checks.h"
#include "fuzz_support.h"
#include "kestrel/decoder.h"
#include "kestrel/model.h"

namespace {

struct Fixture {
  std::shared_ptr<const kestrel::Model> model;
  std::unique_ptr<kestrel::Session> session;
  Fixture() {
    kestrel::ModelOptions options;
    options.num_threads = 1;
    model = kestrel::Model::load(std::filesystem::path(KESTREL_FIXTURE_DIR) / "tiny-gpt2", options);
    kestrel::SessionOptions session_options;
    session_options.max_sequences = 1;
    session_options.max_sequence_tokens = 64;
    session = std::make_unique<kestrel::Session>(model, session_options);
  }
};

constexpr int kMaxNewTokens = 3;
constexpr size_t kMaxPromptTokens = 8;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kestrel;
  static Fixture fixture;
  fuzz::ByteReader in(data, size);
  GenerationRequest r;
  SamplingOptions& s = r.sampling;
  s.temperature = in.take<float>();
  s.top_k = in.take<int32_t>();
  s.top_p = in.take<float>();
  s.min_p = in.take<float>();
  s.repetition_penalty = in.take<float>();
  s.presence_penalty = in.take<float>();
  s.frequency_penalty = in.take<float>();
  s.seed = in.take<uint64_t>();
  const auto flags = in.take<uint8_t>();
  r.stop.max_new_tokens = in.take<int32_t>();
  r.stop.stop_at_eos = (flags & 1) != 0;
  for (int i = 0; i < ((flags >> 1) & 3); ++i) r.stop.stop_token_ids.push_back(in.take<int32_t>());
  for (int i = 0; i < ((flags >> 3) & 3); ++i) r.stop.stop_strings.push_back(in.take_string(in.take<uint8_t>() % 8));
  if ((flags & 0x20) != 0) {
    for (int i = 0, n = in.take<uint8_t>() % 24; i < n; ++i) r.prompt_ids.push_back(in.take<int32_t>());
  }
  r.prompt = in.rest();

  const Model& model = *fixture.model;
  std::vector<int32_t> ids;
  try {
    ids = checked_prompt(r, 0, model, fixture.session->options());
  } catch (const Error&) {
    return 0;  // refused, with a message: what bad options should get
  }
  // Accepted: generate a little with exactly these sampling options.
  if (ids.size() > kMaxPromptTokens) ids.resize(kMaxPromptTokens);
  r.prompt_ids = ids;
  r.stop.max_new_tokens = std::min(r.stop.max_new_tokens, kMaxNewTokens);
  Decoder decoder(*fixture.session);
  GenerationResult result = decoder.generate(r);
  if (result.finish == FinishReason::error || result.tokens.empty() ||
      result.tokens.size() > static_cast<size_t>(kMaxNewTokens)) {
    std::abort();
  }
  for (int32_t id : result.tokens) {
    if (id < 0 || id >= model.config().vocab_size) std::abort();
  }
  return 0;
}
