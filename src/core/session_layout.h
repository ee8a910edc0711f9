// core/session_layout.h: what a Session allocates, computed from its options and the
// model's shape alone (internal). Session::Session builds its KV cache and activation pool
// from this, and the sizing calculator (tools/sizing.h) reports the same numbers without
// creating a session, so the two cannot drift apart.
#pragma once

#include <optional>
#include <vector>

#include "core/activation_pool.h"
#include "core/paged_kv_cache.h"
#include "kestrel/session.h"
#include "parallel/shard.h"

namespace kestrel::detail {

// The KV cache's element type: `requested` (SessionOptions::kv_dtype) or the default of
// `device` for activations in `activations`; throws Error(unsupported) naming kv_dtype when
// `device` has no kernels for it.
DType resolve_kv_dtype(std::optional<DType> requested, DeviceKind device, DType activations);

// The options as a Session resolves them (zeros replaced by the values used, kv_dtype set
// for `device` and the activation dtype `activations`); throws Error(invalid_argument)
// naming the option out of range, Error(unsupported) for a kv_dtype `device` has no kernels for.
SessionOptions resolve_session_options(const SessionOptions& options, const ModelConfig& config, DeviceKind device,
                                       DType activations);

struct SessionLayout {
  SessionOptions options;  // resolved
  int max_blocks_per_seq = 0;
  int logit_rows = 0;      // rows of the LM head per step
  KvCacheShape kv;
  std::vector<ActivationPool::BufferSpec> buffers;  // in detail::Buf order

  size_t kv_bytes() const { return PagedKvCache::bytes_for(kv, *options.kv_dtype); }
  size_t activation_bytes() const { return ActivationPool::bytes_for(buffers); }
};

// `dtype` is the runtime dtype of the activations on `device` (the KV cache's follows from
// it and options.kv_dtype); `gated_ffn` whether the FFN's up projection is [gate | up] (2F
// rows); `shard` the slice of one rank in a parallel run (its layers, heads, FFN columns
// and vocabulary rows size the KV cache and buffers).
SessionLayout session_layout(const ModelConfig& config, bool gated_ffn, DType dtype, DeviceKind device,
                             const SessionOptions& options, const Shard& shard);

}  // namespace kestrel::detail
