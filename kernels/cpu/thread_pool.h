// kernels/cpu/thread_pool.h: the threads of the CPU kernels' parallel loops.
//
// A decode step runs a few hundred small loops; with OpenMP each ends in a barrier that
// waits for every thread of the team, so on a busy machine one descheduled thread stalls
// the step for a scheduler time slice (measured here: 2 threads on a loaded 2-core machine
// decoded SmolLM2 at 0.7 tokens/s, 1 thread at 84). Here a loop is cut into chunks that
// threads claim one at a time; the calling thread works too and waits only for chunks
// that were claimed, so a worker that never woke up costs nothing. Workers spin briefly
// between loops (they follow each other within microseconds in a step), then sleep.
//
// One pool per thread count, shared by every backend of the process. A call that finds
// the pool busy (another thread's loop, or a loop inside a loop) runs on its own thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace kestrel::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // `threads` in all: the caller and threads - 1 workers
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) for consecutive ranges covering [0, n), each at least `grain`
  // long (but the last), about 4 per thread; returns when all have run. fn must not throw
  // (kernels validate their inputs before their loops).
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    auto call = [](void* ctx, int64_t begin, int64_t end) { (*static_cast<Fn*>(ctx))(begin, end); };
    run(n, grain, call, const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using Call = void (*)(void*, int64_t, int64_t);
  void run(int64_t n, int64_t grain, Call call, void* ctx);
  void work(uint32_t generation);        // claims and runs chunks of that generation
  bool claim(uint32_t generation, int64_t* chunk);
  void worker_loop();

  std::vector<std::thread> workers_;
  std::atomic_flag busy_ = ATOMIC_FLAG_INIT;
  // The current loop: written by the caller before it publishes the generation.
  Call call_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0, chunk_ = 0;
  // generation (24 bits) | chunks (20 bits) | next chunk (20 bits), in one word: a worker
  // still in an earlier loop must not judge that loop's claims by the next loop's count.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> done_{0};    // chunks finished in the current generation
  std::atomic<uint32_t> generation_{0};
  uint32_t last_generation_ = 0;    // the caller's (under busy_)
  // Sleeping workers.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

// The process's pool of `threads` threads (made on first use).
ThreadPool& thread_pool(int threads);

// fn(begin, end) over [0, n) on `threads` threads of the shared pool; inline when 1.
template <class F>
void parallel_for(int threads, int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  if (threads <= 1 || n <= grain) {
    fn(int64_t{0}, n);
    return;
  }
  thread_pool(threads).parallel_for(n, grain, fn);
}

}  // namespace kestrel::cpu
