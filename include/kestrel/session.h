// kestrel/session.h: the mutable state for a set of concurrent sequences on one device.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>

#include "kestrel/model.h"

namespace kestrel {

namespace detail {
struct SessionState;
}

// Limits fixed when the session is created; every buffer is sized from them once.
struct SessionOptions {
  int max_sequences = 8;        // sequences decoded together in one step
  int max_sequence_tokens = 0;  // prompt + generated tokens per sequence; 0: the model's max
  int max_step_tokens = 512;    // prompt tokens processed in one context-phase step
  int kv_block_size = 16;       // positions per KV-cache block
  int kv_blocks = 0;            // blocks in the KV pool; 0: enough for every sequence at full length
  // Keep the KV blocks of finished prompts and outputs, keyed by their token prefix, and
  // reuse them for later requests that start with the same tokens (a chat's next turn, a
  // shared system prompt) instead of computing them again; evicted least recently used
  // when blocks are needed. With kernels that are not batch invariant
  // (ModelOptions::batch_invariant) reused positions may differ from recomputed ones in
  // the last bits, as any change of batching does.
  bool prefix_caching = false;
  // Element type of the KV cache. Unset: f16 on the CPU (half the bytes of f32, which every
  // decode step reads back in full; llama.cpp's default too), the activation dtype on CUDA.
  // The CPU takes f32 or f16 (keys and values rounded to nearest even when written, every
  // product still in f32); CUDA only its activation dtype. Resolved in Session::options().
  std::optional<DType> kv_dtype;
};

// Bytes a session holds on its device.
struct SessionMemory {
  size_t kv_cache_bytes = 0;
  size_t activation_bytes = 0;
  size_t total() const { return kv_cache_bytes + activation_bytes; }
};

class Session {
 public:
  // Takes all memory up front; throws Error(invalid_argument) naming the option at fault.
  explicit Session(std::shared_ptr<const Model> model, const SessionOptions& options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Model& model() const;
  // The options as resolved (zeros replaced by the values actually used).
  const SessionOptions& options() const;
  SessionMemory memory() const;
  int free_kv_blocks() const;

  detail::SessionState& state() { return *state_; }

 private:
  std::unique_ptr<detail::SessionState> state_;
};

}  // namespace kestrel
