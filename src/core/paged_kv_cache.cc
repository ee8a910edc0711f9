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
  const size_t n = static_cast<size_t>(shape.num_blocks);
  refs_.assign(n, 0);
  hash_.assign(n, 0);
  parent_.assign(n, -1);
  tokens_.assign(n * static_cast<size_t>(shape.block_size), 0);
  published_.assign(n, 0);
  lru_entry_.resize(n);
  index_.reserve(n);
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
  if (free_.empty()) {  // evict the least recently used cached block
    const int32_t evicted = lru_.front();
    lru_.pop_front();
    index_.erase(hash_[evicted]);
    published_[evicted] = 0;
    free_.push_back(evicted);
  }
  const int32_t block = free_.back();
  free_.pop_back();
  refs_[block] = 1;
  return block;
}

void PagedKvCache::drop(int32_t block) {
  if (--refs_[block] != 0) return;
  if (published_[block])
    lru_entry_[block] = lru_.insert(lru_.end(), block);
  else
    free_.push_back(block);
}

namespace {
// The chain hash of a block: its parent's hash and its tokens (splitmix64 steps).
uint64_t chain_hash(uint64_t parent, std::span<const int32_t> tokens) {
  uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
  for (int32_t t : tokens) {
    h += static_cast<uint32_t>(t) + 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h;
}
}  // namespace

int32_t PagedKvCache::find(uint64_t hash, int32_t parent, std::span<const int32_t> tokens) const {
  auto it = index_.find(hash);
  if (it == index_.end()) return -1;
  const int32_t block = it->second;
  const int32_t* held = tokens_.data() + static_cast<size_t>(block) * shape_.block_size;
  if (parent_[block] != parent || !std::equal(tokens.begin(), tokens.end(), held)) return -1;
  return block;
}

int PagedKvCache::match_prefix(std::span<const int32_t> tokens, std::vector<int32_t>& table) {
  if (!table.empty()) throw Error(ErrorCategory::internal, "match_prefix: the table already holds blocks");
  const size_t bs = static_cast<size_t>(shape_.block_size);
  uint64_t hash = 0;
  int32_t parent = -1;
  for (size_t begin = 0; begin + bs < tokens.size(); begin += bs) {  // the last token stays
    const std::span<const int32_t> block_tokens = tokens.subspan(begin, bs);
    hash = chain_hash(hash, block_tokens);
    const int32_t block = find(hash, parent, block_tokens);
    if (block < 0) break;
    if (refs_[block]++ == 0) lru_.erase(lru_entry_[block]);  // cached, held again
    table.push_back(block);
    parent = block;
  }
  return static_cast<int>(table.size() * bs);
}

void PagedKvCache::publish(const std::vector<int32_t>& table, std::span<const int32_t> tokens, int computed) {
  const size_t bs = static_cast<size_t>(shape_.block_size);
  const size_t full = std::min({table.size(), tokens.size() / bs, static_cast<size_t>(std::max(computed, 0)) / bs});
  uint64_t hash = 0;
  int32_t parent = -1;
  for (size_t i = 0; i < full; ++i) {
    const std::span<const int32_t> block_tokens = tokens.subspan(i * bs, bs);
    hash = chain_hash(hash, block_tokens);
    const int32_t block = table[i];
    if (!published_[block]) {
      if (index_.count(hash)) return;  // this prefix lives in another block: a different chain from here
      published_[block] = 1;
      hash_[block] = hash;
      parent_[block] = parent;
      std::copy(block_tokens.begin(), block_tokens.end(), tokens_.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(block) * bs));
      index_.emplace(hash, block);
    } else if (hash_[block] != hash) {
      return;  // published for another prefix (cannot happen for a table's own blocks)
    }
    parent = block;
  }
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
