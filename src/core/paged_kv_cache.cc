#include "core/paged_kv_cache.h"

#include <algorithm>

#include "kestrel/error.h"

namespace kestrel {

namespace {
size_t layer_elements(const KvCacheShape& s) {
  return static_cast<size_t>(s.num_blocks) * s.num_kv_heads * s.block_size * s.head_dim;
}
}  // namespace

size_t PagedKvCache::bytes_for(const KvCacheShape& shape, DType dtype) {
  return 2 * layer_elements(shape) * shape.num_layers * dtype_size(dtype);  // K and V
}

PagedKvCache::PagedKvCache(Allocator& allocator, DType dtype, const KvCacheShape& shape)
    : allocator_(allocator), dtype_(dtype), shape_(shape) {
  if (shape.num_blocks <= 0 || shape.block_size <= 0)
    throw Error(ErrorCategory::invalid_argument, "KV cache needs at least one block of size >= 1");
  bytes_ = bytes_for(shape, dtype);
  base_ = allocator_.allocate(bytes_, "KV cache");
  free_.reserve(shape.num_blocks);
  refs_.assign(static_cast<size_t>(shape.num_blocks), 0);
  for (int b = shape.num_blocks - 1; b >= 0; --b) free_.push_back(b);  // hand out 0, 1, 2, ...
}

PagedKvCache::~PagedKvCache() { allocator_.deallocate(base_); }

KvCacheLayer PagedKvCache::layer(int index) const {
  const size_t layer_bytes = layer_elements(shape_) * dtype_size(dtype_);
  char* k = static_cast<char*>(base_) + 2 * static_cast<size_t>(index) * layer_bytes;
  KvCacheLayer view;
  const std::initializer_list<int64_t> dims = {shape_.num_blocks, shape_.num_kv_heads,
                                               shape_.block_size, shape_.head_dim};
  view.k = TensorView(k, dtype_, dims, allocator_.device());
  view.v = TensorView(k + layer_bytes, dtype_, dims, allocator_.device());
  view.block_size = shape_.block_size;
  return view;
}

void PagedKvCache::reserve(std::vector<int32_t>& table, int positions) {
  const int needed = blocks_for(positions) - static_cast<int>(table.size());
  if (needed <= 0) return;
  if (needed > free_blocks())
    throw Error(ErrorCategory::limit,
                "KV cache exhausted: " + std::to_string(positions) + " positions need " +
                    std::to_string(needed) + " more blocks of " + std::to_string(shape_.block_size) +
                    " but only " + std::to_string(free_blocks()) + " of " +
                    std::to_string(shape_.num_blocks) + " are free (SessionOptions.kv_blocks)");
  for (int i = 0; i < needed; ++i) table.push_back(take());
}

int32_t PagedKvCache::take() {
  const int32_t block = free_.back();
  free_.pop_back();
  refs_[block] = 1;
  return block;
}

void PagedKvCache::drop(int32_t block) {
  if (--refs_[block] == 0) free_.push_back(block);
}

std::vector<int32_t> PagedKvCache::share(const std::vector<int32_t>& table) {
  for (int32_t block : table) ++refs_[block];
  return table;
}

std::optional<std::pair<int32_t, int32_t>> PagedKvCache::make_writable(std::vector<int32_t>& table, int position) {
  const size_t index = static_cast<size_t>(position / shape_.block_size);
  if (position < 0 || index >= table.size())
    throw Error(ErrorCategory::internal, "make_writable: position " + std::to_string(position) + " is not reserved");
  const int32_t shared = table[index];
  if (refs_[shared] == 1) return std::nullopt;
  if (free_.empty())
    throw Error(ErrorCategory::limit, "KV cache exhausted: a shared block needs a copy but none of " +
                                          std::to_string(shape_.num_blocks) +
                                          " blocks is free (SessionOptions.kv_blocks)");
  table[index] = take();
  --refs_[shared];  // still held by another table
  return std::make_pair(shared, table[index]);
}

void PagedKvCache::release(std::vector<int32_t>& table) { truncate(table, 0); }

void PagedKvCache::truncate(std::vector<int32_t>& table, int positions) {
  const size_t keep = static_cast<size_t>(blocks_for(std::max(positions, 0)));
  while (table.size() > keep) {
    drop(table.back());
    table.pop_back();
  }
}

}  // namespace kestrel
