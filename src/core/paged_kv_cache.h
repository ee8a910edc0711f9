// core/paged_kv_cache.h: the paged KV cache of one session.
//
// One preallocated pool of fixed-size blocks for all layers: for layer l, block b holds
// K and V of `block_size` consecutive positions of one sequence for every KV head,
// laid out [num_blocks, nkv, block_size, hd] per layer (see KvCacheLayer). A sequence
// owns a block table (its block ids in position order). Blocks are reference counted:
// beams and parallel samples share their prompt's blocks (share()), and a block is copied
// only when a sequence is about to write into one it shares (make_writable()); a block
// returns to the free list when its last table lets go of it.
//
// Prefix caching: a full block whose positions hold known tokens can be published under the
// hash of the whole token prefix up to its end (the chain hash of its tokens and its
// parent block's). When its last table lets go of it, a published block stays cached
// instead of going free; a later sequence whose prompt starts with the same tokens takes it
// back (match_prefix) and skips computing those positions. Cached blocks count as free:
// when a block is needed and none is free, the least recently used cached block is evicted.
// A published block is read-only: sequences only ever write past their matched prefix.
// Nothing but the prefix index grows after construction.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
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

  // Takes the published blocks that hold the longest prefix of `tokens` made of whole
  // blocks, leaving at least the last token to compute (its logits are wanted), and
  // appends them to the empty `table`. Returns the positions they cover.
  int match_prefix(std::span<const int32_t> tokens, std::vector<int32_t>& table);
  // Publishes the blocks of `table` that hold whole blocks of `tokens` within the first
  // `computed` positions (those whose K and V have been written). A prefix already
  // published under another block is left as it is.
  void publish(const std::vector<int32_t>& table, std::span<const int32_t> tokens, int computed);

  int blocks_for(int positions) const { return (positions + shape_.block_size - 1) / shape_.block_size; }
  // Blocks a table can take: free ones and cached ones nobody holds (evicted on demand).
  int free_blocks() const { return static_cast<int>(free_.size() + lru_.size()); }
  // Published blocks, held by a table or not.
  int cached_blocks() const { return static_cast<int>(index_.size()); }
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
  std::vector<int32_t> refs_;  // [num_blocks] tables holding each block (0: free or cached)
  // The prefix index: chain hash -> published block. Per block: its hash, its parent
  // block (-1 for a sequence's first) and its tokens [num_blocks, block_size], compared on
  // a match so that a hash collision can never hand out the wrong positions.
  std::unordered_map<uint64_t, int32_t> index_;
  std::vector<uint64_t> hash_;
  std::vector<int32_t> parent_;
  std::vector<int32_t> tokens_;
  std::vector<uint8_t> published_;
  std::list<int32_t> lru_;  // published blocks no table holds, least recently used first
  std::vector<std::list<int32_t>::iterator> lru_entry_;
  int32_t take();
  void drop(int32_t block);
  int32_t find(uint64_t hash, int32_t parent, std::span<const int32_t> tokens) const;
};

}  // namespace kestrel
