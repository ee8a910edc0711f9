// core/paged_kv_cache.h: the paged KV cache of one session.
//
// One preallocated pool of fixed-size blocks for all layers: for layer l, block b holds
// K and V of `block_size` consecutive positions of one sequence for every KV head,
// laid out [num_blocks, nkv, block_size, hd] per layer (see KvCacheLayer). A sequence
// owns a block table (its block ids in position order). Blocks are reference counted:
// beams and parallel samples share their prompt's blocks (share()), and a block is copied
// only when a sequence is about to write into one it shares (make_writable()); a block
// returns to the free list when its last table lets go of it. Nothing is allocated after
// construction.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "backend.h"

namespace kestrel {

struct KvCacheShape {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  int num_blocks = 0;
};

class PagedKvCache {
 public:
  PagedKvCache(Allocator& allocator, DType dtype, const KvCacheShape& shape);
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  KvCacheLayer layer(int index) const;
  const KvCacheShape& shape() const { return shape_; }

  // Grows `table` so it covers `positions` positions. On exhaustion throws Error(limit)
  // and leaves `table` and the free list unchanged.
  void reserve(std::vector<int32_t>& table, int positions);
  // Returns every block of `table` to the pool and clears it.
  void release(std::vector<int32_t>& table);
  // A second table holding the same blocks (each one's count goes up by one).
  std::vector<int32_t> share(const std::vector<int32_t>& table);
  // Before a write at `position` (already reserved): when the block holding it is shared,
  // gives `table` a fresh block in its place and returns {shared block, fresh block},
  // whose contents the caller copies (Backend::copy_kv_blocks) before the write. Throws
  // Error(limit) when no block is free, leaving everything unchanged.
  std::optional<std::pair<int32_t, int32_t>> make_writable(std::vector<int32_t>& table, int position);
  int references(int32_t block) const { return refs_.at(static_cast<size_t>(block)); }

  // Keeps the blocks that hold positions [0, positions) and returns the rest to the pool
  // (speculative decoding drops the positions of rejected draft tokens this way; what
  // stays in a kept block past `positions` is overwritten by the next step).
  void truncate(std::vector<int32_t>& table, int positions);

  int blocks_for(int positions) const { return (positions + shape_.block_size - 1) / shape_.block_size; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  size_t bytes() const { return bytes_; }
  // What a cache of `shape` in `dtype` allocates, without allocating it.
  static size_t bytes_for(const KvCacheShape& shape, DType dtype);

 private:
  Allocator& allocator_;
  DType dtype_;
  KvCacheShape shape_;
  void* base_ = nullptr;
  size_t bytes_ = 0;
  std::vector<int32_t> free_;  // stack of free block ids
  std::vector<int32_t> refs_;  // [num_blocks] tables holding each block (0: free)
  int32_t take();
  void drop(int32_t block);
};

}  // namespace kestrel
