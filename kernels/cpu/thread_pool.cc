#include "cpu/thread_pool.h"

#include <algorithm>
#include <map>
#include <memory>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KESTREL_PAUSE() _mm_pause()
#else
#define KESTREL_PAUSE() std::this_thread::yield()
#endif

namespace kestrel::cpu {

namespace {

// Pause iterations a worker spins for the next loop before it sleeps (about 20-60 us:
// the loops of a step follow each other closer than that), and a caller spins for the
// claimed chunks before it starts yielding its core.
constexpr int kWorkerSpins = 2000;
constexpr int kCallerSpins = 4000;

// The fields of ThreadPool::claim_.
constexpr uint64_t kFieldBits = 20, kFieldMask = (uint64_t{1} << kFieldBits) - 1;
constexpr uint32_t kGenerationMask = (1u << 24) - 1;
constexpr int64_t kMaxChunks = static_cast<int64_t>(kFieldMask);

}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

bool ThreadPool::claim(uint32_t generation, int64_t* chunk) {
  uint64_t state = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(state >> (2 * kFieldBits)) != (generation & kGenerationMask)) return false;
    const int64_t chunks = static_cast<int64_t>((state >> kFieldBits) & kFieldMask);
    const int64_t next = static_cast<int64_t>(state & kFieldMask);
    if (next >= chunks) return false;
    if (claim_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel)) {
      *chunk = next;
      return true;
    }
  }
}

void ThreadPool::work(uint32_t generation) {
  int64_t chunk;
  while (claim(generation, &chunk)) {
    // The loop's fields stay valid: its caller waits for every claimed chunk.
    const int64_t begin = chunk * chunk_, end = std::min(n_, begin + chunk_);
    call_(ctx_, begin, end);
    done_.fetch_add(1, std::memory_order_release);
  }
}

void ThreadPool::worker_loop() {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int i = 0; g == seen && i < kWorkerSpins && !stop_.load(std::memory_order_relaxed); ++i) {
      KESTREL_PAUSE();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);  // seq_cst: pairs with the caller's load after publishing
      wake_.wait(lock, [&] { return generation_.load() != seen || stop_.load(); });
      sleepers_.fetch_sub(1);
      g = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load()) return;
    seen = g;
    work(g);
  }
}

void ThreadPool::run(int64_t n, int64_t grain, Call call, void* ctx) {
  if (workers_.empty() || busy_.test_and_set(std::memory_order_acquire)) {
    call(ctx, 0, n);  // no workers, or the pool is running another loop: this thread alone
    return;
  }
  const int64_t target = std::min<int64_t>(static_cast<int64_t>(threads()) * 4, kMaxChunks);
  const int64_t chunk = std::max<int64_t>(std::max<int64_t>(grain, 1), (n + target - 1) / target);
  const int64_t chunks = (n + chunk - 1) / chunk;
  call_ = call;
  ctx_ = ctx;
  n_ = n;
  chunk_ = chunk;
  done_.store(0, std::memory_order_relaxed);
  const uint32_t generation = ++last_generation_ & kGenerationMask;
  claim_.store((static_cast<uint64_t>(generation) << (2 * kFieldBits)) | (static_cast<uint64_t>(chunks) << kFieldBits),
               std::memory_order_release);
  generation_.store(generation);  // seq_cst: then read sleepers_
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    wake_.notify_all();
  }
  work(generation);
  for (int spins = 0; done_.load(std::memory_order_acquire) < chunks; ++spins) {
    if (spins < kCallerSpins)
      KESTREL_PAUSE();
    else
      std::this_thread::yield();  // a worker holding a chunk was descheduled
  }
  busy_.clear(std::memory_order_release);
}

ThreadPool& thread_pool(int threads) {
  static std::mutex mutex;
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  std::lock_guard<std::mutex> lock(mutex);
  auto& pool = pools[threads];
  if (!pool) pool = std::make_unique<ThreadPool>(threads);
  return *pool;
}

}  // namespace kestrel::cpu
