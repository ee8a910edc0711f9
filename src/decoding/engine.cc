#include "kestrel/engine.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/session_state.h"
#include "decoding/scheduler.h"
#include "kestrel/error.h"

namespace kestrel {

namespace detail {
// What a handle and the engine thread share about one request. The engine thread pushes
// events and sets `result` / `done` under `mutex`; handles read them under it.
struct RequestState {
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<TokenEvent> events;
  GenerationResult result;
  bool done = false;
  std::shared_ptr<Job> job;  // for cancel(): its flag is read by the scheduler
};
}  // namespace detail

bool RequestHandle::next(std::vector<TokenEvent>& out, std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_->mutex);
  state_->changed.wait_for(lock, timeout, [&] { return state_->done || !state_->events.empty(); });
  const bool more = !state_->done || !state_->events.empty();
  for (TokenEvent& event : state_->events) out.push_back(std::move(event));
  state_->events.clear();
  return more;
}

void RequestHandle::cancel() { state_->job->cancelled.store(true, std::memory_order_relaxed); }

bool RequestHandle::finished() const {
  std::lock_guard lock(state_->mutex);
  return state_->done;
}

GenerationResult RequestHandle::wait() {
  std::unique_lock lock(state_->mutex);
  state_->changed.wait(lock, [&] { return state_->done; });
  return state_->result;
}

// The engine's state: `inbox` (submitted, not yet handed to the scheduler), `stop` and the
// stats are under `mutex`; the scheduler is touched by the engine thread only, and that
// thread never holds the mutex while it runs a step.
struct Engine::Shared {
  EngineOptions options;
  Scheduler scheduler;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<Job>> inbox;
  bool stop = false;
  size_t next_index = 0;
  EngineStats stats;
  // Counted by the engine thread as tokens stream and requests end (before the handle
  // sees them), read by stats().
  std::atomic<uint64_t> generated{0}, finished{0}, query_tokens{0}, hit_tokens{0};
  std::thread thread;

  Shared(detail::SessionState& s, const EngineOptions& o) : options(o), scheduler(s, nullptr) {}
};

Engine::Engine(Session& session, const EngineOptions& options) : session_(session) {
  if (options.max_queued < 1)
    throw Error(ErrorCategory::invalid_argument,
                "EngineOptions.max_queued = " + std::to_string(options.max_queued) + " (must be >= 1)");
  const ParallelInfo& parallel = session.model().parallel();
  if (parallel.tensor_parallel * parallel.pipeline_parallel > 1)
    throw Error(ErrorCategory::unsupported,
                "Engine: tensor / pipeline parallel runs step in lockstep on every rank; use Decoder::generate");
  shared_ = std::make_unique<Shared>(session.state(), options);
  shared_->stats.kv_blocks_total = session.state().kv->shape().num_blocks;
  shared_->thread = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(shared_->mutex);
    shared_->stop = true;
  }
  shared_->wake.notify_all();
  shared_->thread.join();
}

std::shared_ptr<RequestHandle> Engine::submit(const GenerationRequest& request) {
  auto state = std::make_shared<detail::RequestState>();
  auto job = std::make_shared<Job>();
  job->request = request;
  {
    std::lock_guard lock(shared_->mutex);
    job->index = shared_->next_index++;
  }
  Scheduler::check(*job, session_.state(), /*has_draft=*/false);
  // The handle's state holds the job (cancel() sets its flag); the job's callbacks see the
  // state through a weak pointer, so a handle dropped early only drops its events.
  std::weak_ptr<detail::RequestState> weak = state;
  job->on_token = [weak](const StreamEvent& event) {
    if (auto state = weak.lock()) {
      {
        std::lock_guard lock(state->mutex);
        state->events.push_back({event.token, std::string(event.text), event.sequence,
                                 std::chrono::steady_clock::now(),
                                 event.logprobs ? std::optional<TokenLogprobs>(*event.logprobs) : std::nullopt});
      }
      state->changed.notify_all();
    }
    return true;
  };
  job->on_finished = [weak](Job& finished) {
    if (auto state = weak.lock()) {
      {
        std::lock_guard lock(state->mutex);
        state->result = std::move(finished.result);
        state->done = true;
      }
      state->changed.notify_all();
    }
  };
  state->job = job;
  {
    std::lock_guard lock(shared_->mutex);
    EngineStats& stats = shared_->stats;
    if (static_cast<int>(shared_->inbox.size()) + stats.queued >= shared_->options.max_queued) {
      ++stats.refused;
      return nullptr;
    }
    ++stats.submitted;
    stats.prompt_tokens += job->result.prompt_ids.size();
    shared_->inbox.push_back(std::move(job));
  }
  shared_->wake.notify_all();
  return std::make_shared<RequestHandle>(std::move(state));
}

EngineStats Engine::stats() const {
  std::lock_guard lock(shared_->mutex);
  EngineStats stats = shared_->stats;
  stats.queued += static_cast<int>(shared_->inbox.size());
  stats.generated_tokens = shared_->generated.load(std::memory_order_relaxed);
  stats.finished = shared_->finished.load(std::memory_order_relaxed);
  stats.prefix_query_tokens = shared_->query_tokens.load(std::memory_order_relaxed);
  stats.prefix_hit_tokens = shared_->hit_tokens.load(std::memory_order_relaxed);
  return stats;
}

void Engine::loop() {
  Shared& sh = *shared_;
  Scheduler& scheduler = sh.scheduler;
  detail::SessionState& s = session_.state();
  for (;;) {
    {
      std::unique_lock lock(sh.mutex);
      sh.stats.queued = static_cast<int>(scheduler.waiting());
      sh.stats.running = static_cast<int>(scheduler.running());
      sh.stats.kv_blocks_used = sh.stats.kv_blocks_total - s.kv->free_blocks();
      sh.stats.kv_blocks_cached = s.kv->cached_blocks();
      sh.wake.wait(lock, [&] { return sh.stop || !sh.inbox.empty() || !scheduler.idle(); });
      if (sh.stop) break;
      for (auto& job : sh.inbox) {
        // Counts on the engine thread, outside the handle's callbacks.
        auto on_token = std::move(job->on_token);
        job->on_token = [on_token, &sh](const StreamEvent& event) {
          sh.generated.fetch_add(1, std::memory_order_relaxed);
          return on_token(event);
        };
        auto on_finished = std::move(job->on_finished);
        job->on_finished = [on_finished, &sh](Job& j) {
          sh.finished.fetch_add(1, std::memory_order_relaxed);
          sh.query_tokens.fetch_add(j.result.prompt_ids.size(), std::memory_order_relaxed);
          sh.hit_tokens.fetch_add(static_cast<uint64_t>(j.result.cached_prompt_tokens), std::memory_order_relaxed);
          on_finished(j);
        };
        scheduler.add(std::move(job));
      }
      sh.inbox.clear();
      ++sh.stats.steps;
    }
    try {
      scheduler.step();
    } catch (const std::exception& e) {
      // A failed step (a device error, a broken invariant) ends the requests it held; the
      // engine goes on serving new ones.
      scheduler.abort_all(e.what());
    }
  }
  // Shutting down: every request still held ends as cancelled.
  std::lock_guard lock(sh.mutex);
  for (auto& job : sh.inbox) scheduler.add(std::move(job));
  sh.inbox.clear();
  scheduler.cancel_all();
}

}  // namespace kestrel
