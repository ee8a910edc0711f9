// The CPU kernels' thread pool: every index of a loop runs exactly once, whatever the
// length, grain and thread count; loops back to back (thousands, as a decode step runs
// them); loops from several threads at once and loops inside loops (run inline).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "cpu/thread_pool.h"

namespace kestrel {
namespace {

TEST(ThreadPool, EveryIndexRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    cpu::ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (int64_t n : {1, 2, 7, 64, 1000, 100003}) {
      for (int64_t grain : {1, 5, 4096}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.parallel_for(n, grain, [&](int64_t begin, int64_t end) {
          ASSERT_LT(begin, end);
          for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " " << n << " " << i;
      }
    }
  }
}

TEST(ThreadPool, ThousandsOfLoopsBackToBack) {
  cpu::ThreadPool pool(4);
  int64_t total = 0;
  std::vector<int64_t> partial(64);
  for (int step = 0; step < 20000; ++step) {
    const int64_t n = 1 + step % 64;
    std::fill(partial.begin(), partial.end(), 0);
    pool.parallel_for(n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) partial[static_cast<size_t>(i)] = i + step;
    });
    for (int64_t i = 0; i < n; ++i) total += partial[static_cast<size_t>(i)];
  }
  int64_t want = 0;
  for (int step = 0; step < 20000; ++step)
    for (int64_t i = 0; i < 1 + step % 64; ++i) want += i + step;
  EXPECT_EQ(total, want);
}

TEST(ThreadPool, ConcurrentAndNestedLoopsComplete) {
  std::atomic<int64_t> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep)
        cpu::parallel_for(2, 100, 1, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            // A loop inside a loop finds the pool busy and runs on its own thread.
            cpu::parallel_for(2, 10, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
          }
        });
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), int64_t{4} * 200 * 100 * 10);
}

}  // namespace
}  // namespace kestrel
