#include "kestrel/session.h"

#include "core/session_layout.h"
#include "core/session_state.h"
#include "kestrel/error.h"

namespace kestrel {

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& options)
    : state_(std::make_unique<detail::SessionState>()) {
  if (!model) throw Error(ErrorCategory::invalid_argument, "Session: model is null");
  auto& s = *state_;
  s.model = std::move(model);
  const auto& m = s.m();
  // In a parallel run one rank may fail alone (its GPU has less memory free): every rank
  // then throws that rank's error instead of the others waiting for it in the first step.
  std::exception_ptr error;
  try {
    // The sizes come from session_layout, which the sizing calculator shares; widths are
    // this rank's slice in a parallel run.
    detail::SessionLayout layout =
        detail::session_layout(m.arch.config, m.arch.kinds.gated_ffn, m.dtype, s.backend().device().kind, options,
                               s.shard());
    s.options = layout.options;
    s.max_blocks_per_seq = layout.max_blocks_per_seq;
    s.logit_rows = layout.logit_rows;
    Backend& backend = s.backend();
    s.kv = std::make_unique<PagedKvCache>(backend.allocator(), *s.options.kv_dtype, layout.kv);
    s.pool = std::make_unique<ActivationPool>(backend.allocator(), std::move(layout.buffers));
    if (m.arch.kinds.rotary_context.kind != RopeContextScaling::Kind::none) {
      std::vector<float> table = rotary_inv_freq_for_context(m.arch.kinds, s.options.max_sequence_tokens);
      const auto pairs = static_cast<int64_t>(table.size());
      s.rotary = std::make_unique<ActivationPool>(
          backend.allocator(), std::vector<ActivationPool::BufferSpec>{{"rotary inv_freq", DType::f32, {pairs}}});
      backend.copy(s.rotary->view(0), TensorView(table.data(), DType::f32, {pairs}));
      backend.synchronize();  // `table` is freed at the end of this block
    }
  } catch (...) {
    error = std::current_exception();
  }
  agree_on_errors(s.parallel(), error);
}

Session::~Session() = default;

const Model& Session::model() const { return *state_->model; }
const SessionOptions& Session::options() const { return state_->options; }
SessionMemory Session::memory() const { return {state_->kv->bytes(), state_->pool->bytes()}; }
int Session::free_kv_blocks() const { return state_->kv->free_blocks(); }

}  // namespace kestrel
