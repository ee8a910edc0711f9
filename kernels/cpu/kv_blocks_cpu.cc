// kernels/cpu/kv_blocks_cpu.cc: copy-on-write of KV-cache blocks.
#include <cstring>
#include <set>

#include "cpu/cpu_ops.h"

namespace kestrel::cpu {

// cache.k, cache.v: [num_blocks, nkv, block_size, hd]; pairs: [n, 2] i32 (source, destination).
void copy_kv_blocks(const KvCacheLayer& cache, const TensorView& pairs) {
  const char* op = "copy_kv_blocks";
  expect_tensor(cache.k, cache.k.dtype, {-1, -1, -1, -1}, op, "k");
  expect_tensor(cache.v, cache.k.dtype, {cache.k.dim(0), cache.k.dim(1), cache.k.dim(2), cache.k.dim(3)}, op, "v");
  expect_tensor(pairs, DType::i32, {-1, 2}, op, "pairs");
  const int64_t num_blocks = cache.k.dim(0), n = pairs.dim(0);
  const int32_t* p = pairs.ptr<int32_t>();
  std::set<int32_t> sources, destinations;
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < 2; ++j)
      if (p[2 * i + j] < 0 || p[2 * i + j] >= num_blocks)
        fail(op, "pairs[" + std::to_string(i) + ", " + std::to_string(j) + "] = " + std::to_string(p[2 * i + j]) +
                     " is outside the cache's " + std::to_string(num_blocks) + " blocks");
    sources.insert(p[2 * i]);
    if (!destinations.insert(p[2 * i + 1]).second)
      fail(op, "block " + std::to_string(p[2 * i + 1]) + " is the destination of two pairs");
  }
  for (int32_t d : destinations)
    if (sources.count(d)) fail(op, "block " + std::to_string(d) + " is both a source and a destination");
  const size_t block_bytes = cache.k.bytes() / static_cast<size_t>(num_blocks);
  for (int64_t i = 0; i < n; ++i)
    for (const TensorView* t : {&cache.k, &cache.v}) {
      char* base = static_cast<char*>(t->data);
      std::memcpy(base + p[2 * i + 1] * block_bytes, base + p[2 * i] * block_bytes, block_bytes);
    }
}

}  // namespace kestrel::cpu
