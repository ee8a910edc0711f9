// kernels/cuda/kv_blocks_cuda.cu: copy-on-write of KV-cache blocks.
#include "cuda/cuda_common.cuh"

namespace kestrel::cuda {

namespace {

constexpr int kThreads = 256;

// Grid (n pairs, 2: k then v); the threads of a block copy one whole cache block as 16-byte
// words when the block's bytes allow it (they do for every head_dim the backend accepts),
// else as bytes. k, v: [num_blocks, block_bytes] viewed as bytes; pairs: [n, 2] i32.
// A pair naming a block outside the cache is recorded and skipped.
template <class W>
__global__ void __launch_bounds__(kThreads)
    copy_kv_blocks_kernel(char* k, char* v, int64_t num_blocks, int64_t block_words, const int32_t* pairs,
                          DeviceErrorRecord* errors) {
  const int64_t i = blockIdx.x;
  const int32_t src = pairs[2 * i], dst = pairs[2 * i + 1];
  if (src < 0 || src >= num_blocks || dst < 0 || dst >= num_blocks) {
    if (threadIdx.x == 0 && blockIdx.y == 0) report(errors, DeviceErrorCode::kv_block, static_cast<int>(i));
    return;
  }
  W* base = reinterpret_cast<W*>(blockIdx.y == 0 ? k : v);
  const W* from = base + static_cast<int64_t>(src) * block_words;
  W* to = base + static_cast<int64_t>(dst) * block_words;
  for (int64_t w = threadIdx.x; w < block_words; w += blockDim.x) to[w] = from[w];
}

}  // namespace

void copy_kv_blocks(const LaunchContext& ctx, const KvCacheLayer& cache, const TensorView& pairs) {
  const int64_t n = pairs.dim(0), num_blocks = cache.k.dim(0);
  if (n == 0 || num_blocks == 0) return;
  const int64_t block_bytes = static_cast<int64_t>(cache.k.bytes()) / num_blocks;
  const bool wide = block_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(cache.k.data) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(cache.v.data) % 16 == 0;
  const dim3 grid(static_cast<unsigned>(n), 2);
  if (wide)
    copy_kv_blocks_kernel<int4><<<grid, kThreads, 0, ctx.stream>>>(
        static_cast<char*>(cache.k.data), static_cast<char*>(cache.v.data), num_blocks, block_bytes / 16,
        pairs.ptr<int32_t>(), ctx.errors);
  else
    copy_kv_blocks_kernel<char><<<grid, kThreads, 0, ctx.stream>>>(
        static_cast<char*>(cache.k.data), static_cast<char*>(cache.v.data), num_blocks, block_bytes,
        pairs.ptr<int32_t>(), ctx.errors);
  check_launch("copy_kv_blocks");
}

}  // namespace kestrel::cuda
