// core/session_layout.h: what a Session allocates, computed from its options and the
// model's shape alone (internal). Session::Session builds its KV cache and activation pool
// from this, and the sizing calculator (tools/sizing.h) reports the same numbers without
// creating a session, so the two cannot drift apart.
#pragma once

#include <vector>

#include "core/activation_pool.h"
#include "core/paged_kv_cache.h"
#include "kestrel/session.h"
#include "parallel/shard.h"

namespace kestrel::detail {

// The options as a Session resolves them (zeros replaced by the values used); throws
// Error(invalid_argument) naming the option out of range.
SessionOptions resolve_session_options(const SessionOptions& options, const ModelConfig& config);

struct SessionLayout {
  SessionOptions options;  // resolved
  int max_blocks_per_seq = 0;
  int logit_rows = 0;      // rows of the LM head per step
  KvCacheShape kv;
  std::vector<ActivationPool::BufferSpec> buffers;  // in detail::Buf order

  size_t kv_bytes(DType dtype) const { return PagedKvCache::bytes_for(kv, dtype); }
  size_t activation_bytes() const { return ActivationPool::bytes_for(buffers); }
};

// `dtype` is the runtime dtype of activations and KV cache; `gated_ffn` whether the FFN's
// up projection is [gate | up] (2F rows); `shard` the slice of one rank in a parallel run
// (its layers, heads, FFN columns and vocabulary rows size the KV cache and buffers).
SessionLayout session_layout(const ModelConfig& config, bool gated_ffn, DType dtype,
                             const SessionOptions& options, const Shard& shard);

}  // namespace kestrel::detail
