#include "core/paged_kv_cache.h"

#include <gtest/gtest.h>

#include <set>

#include "core/activation_pool.h"

namespace kestrel {
namespace {

std::unique_ptr<Backend> cpu() { return make_cpu_backend(1); }

TEST(PagedKvCache, HandsOutAndTakesBackBlocks) {
  auto backend = cpu();
  PagedKvCache cache(backend->allocator(), DType::f32, {2, 2, 8, 4, 5});
  EXPECT_EQ(cache.bytes(), 2u * 2 * 5 * 2 * 4 * 8 * sizeof(float));
  std::vector<int32_t> a, b;
  cache.reserve(a, 5);  // 2 blocks of 4
  EXPECT_EQ(a.size(), 2u);
  cache.reserve(a, 8);  // still 2
  EXPECT_EQ(a.size(), 2u);
  cache.reserve(b, 12);
  EXPECT_EQ(b.size(), 3u);
  EXPECT_EQ(cache.free_blocks(), 0);
  std::set<int32_t> all(a.begin(), a.end());
  all.insert(b.begin(), b.end());
  EXPECT_EQ(all.size(), 5u) << "a block handed out twice";
  cache.release(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(cache.free_blocks(), 2);
}

// Prefix caching: blocks published under their token prefix come back to a table whose
// tokens start the same way (whole blocks only, the last token always left to compute),
// stay cached but count as free once released, and are evicted least recently used.
TEST(PagedKvCache, PublishedPrefixesAreMatchedSharedAndEvictedLeastRecentlyUsed) {
  auto backend = cpu();
  PagedKvCache cache(backend->allocator(), DType::f32, {1, 1, 4, 4, 6});  // 6 blocks of 4
  const std::vector<int32_t> chat = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};     // 2 whole blocks + 2
  std::vector<int32_t> first;
  EXPECT_EQ(cache.match_prefix(chat, first), 0);  // nothing published yet
  cache.reserve(first, 10);
  cache.publish(first, chat, 7);  // positions 0..6 written: only block 0 is whole
  EXPECT_EQ(cache.cached_blocks(), 1);
  cache.publish(first, chat, 10);
  EXPECT_EQ(cache.cached_blocks(), 2);

  // A longer prompt with the same start shares both blocks while the first still holds them.
  std::vector<int32_t> next_turn = chat;
  next_turn.insert(next_turn.end(), {11, 12, 13});
  std::vector<int32_t> second;
  EXPECT_EQ(cache.match_prefix(next_turn, second), 8);
  EXPECT_EQ(second, std::vector<int32_t>(first.begin(), first.begin() + 2));
  EXPECT_EQ(cache.references(first[0]), 2);
  // A different token inside block 1 stops the match after block 0; a prompt of exactly 8
  // tokens reuses only block 0 (its last token must be computed).
  std::vector<int32_t> other = chat, third;
  other[5] = 99;
  EXPECT_EQ(cache.match_prefix(other, third), 4);
  cache.release(third);
  EXPECT_EQ(cache.match_prefix(std::vector<int32_t>(chat.begin(), chat.begin() + 8), third), 4);
  cache.release(third);

  // Released, the blocks stay cached and count as free.
  cache.release(first);
  cache.release(second);
  EXPECT_EQ(cache.free_blocks(), 6);
  EXPECT_EQ(cache.cached_blocks(), 2);
  EXPECT_EQ(cache.match_prefix(next_turn, second), 8);  // cached, not held: taken back
  cache.release(second);

  // Needing every block evicts the cached ones; the prefix is gone.
  std::vector<int32_t> big;
  cache.reserve(big, 24);
  EXPECT_EQ(cache.cached_blocks(), 0);
  cache.release(big);
  EXPECT_EQ(cache.match_prefix(next_turn, second), 0);
}

TEST(PagedKvCache, EvictionTakesTheLeastRecentlyUsedCachedBlockFirst) {
  auto backend = cpu();
  PagedKvCache cache(backend->allocator(), DType::f32, {1, 1, 4, 4, 5});
  const std::vector<int32_t> a_tokens = {1, 1, 1, 1, 0}, b_tokens = {2, 2, 2, 2, 0};
  std::vector<int32_t> a, b, c;
  cache.reserve(a, 5);
  cache.publish(a, a_tokens, 5);
  cache.reserve(b, 5);
  cache.publish(b, b_tokens, 5);
  cache.release(a);  // a's block 0 cached first, then b's
  cache.release(b);
  EXPECT_EQ(cache.match_prefix(a_tokens, c), 4);  // a used again: b's is now the oldest
  cache.release(c);
  cache.reserve(c, 16);  // 4 blocks: the 3 free ones and the oldest cached (b's)
  EXPECT_EQ(cache.cached_blocks(), 1);
  cache.release(c);
  std::vector<int32_t> probe;
  EXPECT_EQ(cache.match_prefix(b_tokens, probe), 0);
  EXPECT_EQ(cache.match_prefix(a_tokens, probe), 4);
  cache.release(probe);
}

TEST(PagedKvCache, TruncateKeepsTheBlocksOfThePositionsKept) {
  auto backend = cpu();
  PagedKvCache cache(backend->allocator(), DType::f32, {1, 1, 4, 4, 6});
  std::vector<int32_t> a;
  cache.reserve(a, 17);  // 5 blocks
  const std::vector<int32_t> first_two(a.begin(), a.begin() + 2);
  cache.truncate(a, 5);  // positions 0..4: 2 blocks
  EXPECT_EQ(a, first_two);
  EXPECT_EQ(cache.free_blocks(), 4);
  cache.truncate(a, 8);  // nothing to drop, nothing taken
  EXPECT_EQ(a.size(), 2u);
  cache.truncate(a, 0);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(cache.free_blocks(), 6);
}

TEST(PagedKvCache, SharedBlocksAreCopiedOnWriteAndFreedByTheLastHolder) {
  auto backend = cpu();
  PagedKvCache cache(backend->allocator(), DType::f32, {1, 1, 4, 4, 6});
  std::vector<int32_t> prompt;
  cache.reserve(prompt, 6);  // blocks 0, 1; position 5 in block 1
  std::vector<int32_t> beam = cache.share(prompt);
  EXPECT_EQ(cache.references(prompt[0]), 2);
  EXPECT_EQ(cache.free_blocks(), 4);
  // The beam writes position 6 (block 1, shared): it gets its own copy of block 1.
  const auto copy = cache.make_writable(beam, 6);
  ASSERT_TRUE(copy.has_value());
  EXPECT_EQ(copy->first, prompt[1]);
  EXPECT_EQ(copy->second, beam[1]);
  EXPECT_NE(beam[1], prompt[1]);
  EXPECT_EQ(beam[0], prompt[0]) << "full blocks stay shared";
  EXPECT_FALSE(cache.make_writable(beam, 7).has_value()) << "its own block needs no copy";
  EXPECT_FALSE(cache.make_writable(prompt, 6).has_value()) << "the last holder writes in place";
  cache.release(prompt);
  EXPECT_EQ(cache.references(beam[0]), 1);
  EXPECT_EQ(cache.free_blocks(), 4) << "block 0 is still the beam's";
  cache.release(beam);
  EXPECT_EQ(cache.free_blocks(), 6);
}

TEST(PagedKvCache, ExhaustionIsAClearErrorThatTakesNothing) {
  auto backend = cpu();
  PagedKvCache cache(backend->allocator(), DType::f32, {1, 1, 4, 16, 3});
  std::vector<int32_t> a;
  cache.reserve(a, 32);
  try {
    cache.reserve(a, 100);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::limit);
    EXPECT_NE(std::string(e.what()).find("KV cache exhausted"), std::string::npos);
  }
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(cache.free_blocks(), 1);
}

TEST(PagedKvCache, LayersDoNotOverlap) {
  auto backend = cpu();
  PagedKvCache cache(backend->allocator(), DType::f32, {3, 2, 8, 4, 6});
  const size_t layer = 6 * 2 * 4 * 8 * sizeof(float);
  for (int l = 0; l < 3; ++l) {
    auto v = cache.layer(l);
    EXPECT_EQ(static_cast<char*>(v.v.data) - static_cast<char*>(v.k.data), static_cast<ptrdiff_t>(layer));
    if (l > 0) {
      EXPECT_EQ(static_cast<char*>(v.k.data) - static_cast<char*>(cache.layer(l - 1).k.data),
                static_cast<ptrdiff_t>(2 * layer));
    }
    EXPECT_EQ(v.k.dim(0), 6);
    EXPECT_EQ(v.k.dim(2), 4);
  }
}

TEST(ActivationPool, OneAlignedAllocationForAllBuffers) {
  auto backend = cpu();
  ActivationPool pool(backend->allocator(), {{"a", DType::f32, {3, 5}}, {"b", DType::i32, {7}}, {"c", DType::f16, {2, 2}}});
  EXPECT_EQ(pool.view(0).dim(1), 5);
  EXPECT_EQ(pool.view(1).dtype, DType::i32);
  // Offsets inside the pool are 256-byte aligned; the base has the allocator's alignment
  // (64 bytes on the CPU, 256 from cudaMalloc).
  const auto base = reinterpret_cast<uintptr_t>(pool.view(0).data);
  EXPECT_EQ(base % 64, 0u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ((reinterpret_cast<uintptr_t>(pool.view(i).data) - base) % 256, 0u);
  EXPECT_GE(static_cast<char*>(pool.view(1).data) - static_cast<char*>(pool.view(0).data), 60);
  EXPECT_EQ(pool.bytes(), 3u * 256);
}

}  // namespace
}  // namespace kestrel
