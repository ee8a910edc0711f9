// kestrel/engine.h: continuous batching for serving. The engine owns a thread that runs
// generation steps over a session while any thread submits requests; a request joins the
// running batch at the next step (its prompt in chunks beside the sequences already
// decoding) and leaves it as soon as it finishes or is cancelled. It runs the same
// scheduler as Decoder::generate (admission in arrival order, prompt chunks under
// SessionOptions.max_step_tokens, one decode step for every running sequence per step).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kestrel/decoder.h"

namespace kestrel {

struct EngineOptions {
  // Requests accepted but not yet running; submit() refuses more (a server answers 503).
  int max_queued = 256;  // >= 1
};

// One streamed piece of a request's output (see StreamEvent).
struct TokenEvent {
  int32_t token = 0;
  std::string text;  // newly final text; may be empty
  int sequence = 0;  // which completion, with num_return_sequences > 1
  std::chrono::steady_clock::time_point time;  // when the engine produced it
  std::optional<TokenLogprobs> logprobs;       // with OutputOptions.logprobs
};

namespace detail {
struct RequestState;
}

// A submitted request: its stream of tokens, cancellation and result. Thread-safe.
class RequestHandle {
 public:
  explicit RequestHandle(std::shared_ptr<detail::RequestState> state) : state_(std::move(state)) {}
  // Waits up to `timeout` for events and moves those produced so far to the end of `out`.
  // Returns false once the request has finished and every event has been taken.
  bool next(std::vector<TokenEvent>& out, std::chrono::milliseconds timeout);
  // Ends the request at the engine's next step (FinishReason::cancelled), freeing its slot
  // and KV blocks; a request still queued never starts. Idempotent.
  void cancel();
  bool finished() const;
  // Blocks until the request has finished; its result (tokens as streamed).
  GenerationResult wait();

 private:
  std::shared_ptr<detail::RequestState> state_;
};

// Counters for monitoring (a consistent snapshot taken between steps).
struct EngineStats {
  int queued = 0;   // accepted, waiting for a slot
  int running = 0;  // sequences in the batch
  uint64_t submitted = 0;  // requests accepted
  uint64_t refused = 0;    // requests refused because the queue was full
  uint64_t finished = 0;   // requests finished (any reason)
  uint64_t prompt_tokens = 0;     // of the requests accepted
  uint64_t generated_tokens = 0;  // streamed so far
  uint64_t steps = 0;
  int kv_blocks_total = 0;
  int kv_blocks_used = 0;    // held by running sequences
  int kv_blocks_cached = 0;  // published in the prefix cache (held or not)
  // Prefix caching (SessionOptions::prefix_caching), over the finished requests: prompt
  // tokens, and those of them taken from the cache.
  uint64_t prefix_query_tokens = 0;
  uint64_t prefix_hit_tokens = 0;
};

class Engine {
 public:
  // Starts the step thread. The session must outlive the engine and not be used by anyone
  // else meanwhile. A tensor / pipeline parallel model is refused (Error(unsupported)):
  // its ranks must step in lockstep, which Decoder::generate does.
  explicit Engine(Session& session, const EngineOptions& options = {});
  // Cancels every request and joins the thread.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates the request as Decoder::generate does (throws Error(invalid_argument / limit
  // / unsupported) naming the field) and queues it. Returns nullptr, queueing nothing, when
  // EngineOptions.max_queued requests are already waiting. Speculative decoding with a
  // draft model is not available here (no draft session).
  std::shared_ptr<RequestHandle> submit(const GenerationRequest& request);

  EngineStats stats() const;
  const Session& session() const { return session_; }

 private:
  struct Shared;
  void loop();
  Session& session_;
  std::unique_ptr<Shared> shared_;
};

}  // namespace kestrel
