// kernels/moe_checks.h: the shape checks of the mixture-of-experts operations (backend.h),
// shared by every backend; failures throw Error(internal) naming the operation and tensor.
#pragma once

#include "op_checks.h"

namespace kestrel {

// moe_route: logits [T, E] in `act`; ids [T, k] i32; weights [T, k] f32; 1 <= k <= E.
inline void check_moe_route(Device device, DType act, const TensorView& logits, const TensorView& ids,
                            const TensorView& weights) {
  const char* op = "moe_route";
  expect_op_tensor(logits, device, act, {-1, -1}, op, "router_logits");
  const int64_t T = logits.dim(0), E = logits.dim(1);
  expect_op_tensor(ids, device, DType::i32, {T, -1}, op, "ids");
  const int64_t k = ids.dim(1);
  expect_op_tensor(weights, device, DType::f32, {T, k}, op, "weights");
  if (k < 1 || k > E)
    op_fail(op, "k = " + std::to_string(k) + " must be in [1, E = " + std::to_string(E) + "]");
}

// moe_group: ids [T, k] i32; offsets [E + 1] i32 (E >= 1); rows, slot_of [T k] i32.
inline void check_moe_group(Device device, const TensorView& ids, const TensorView& offsets, const TensorView& rows,
                            const TensorView& slot_of) {
  const char* op = "moe_group";
  expect_op_tensor(ids, device, DType::i32, {-1, -1}, op, "ids");
  const int64_t n = ids.numel();
  expect_op_tensor(offsets, device, DType::i32, {-1}, op, "offsets");
  if (offsets.dim(0) < 2) op_fail(op, "offsets must hold E + 1 >= 2 entries");
  expect_op_tensor(rows, device, DType::i32, {n}, op, "rows");
  expect_op_tensor(slot_of, device, DType::i32, {n}, op, "slot_of");
}

// moe_combine: expert_out [T k, H] in `act`; slot_of [T k] i32; weights [T, k] f32; shared
// [T, H] and shared_gate [T, 1] in `act` (both or neither); out [T, H] in `act`.
inline void check_moe_combine(Device device, DType act, const TensorView& expert_out, const TensorView& slot_of,
                              const TensorView& weights, const TensorView* shared, const TensorView* shared_gate,
                              const TensorView& out) {
  const char* op = "moe_combine";
  expect_op_tensor(weights, device, DType::f32, {-1, -1}, op, "weights");
  const int64_t T = weights.dim(0), k = weights.dim(1);
  expect_op_tensor(expert_out, device, act, {T * k, -1}, op, "expert_out");
  const int64_t H = expert_out.dim(1);
  expect_op_tensor(slot_of, device, DType::i32, {T * k}, op, "slot_of");
  expect_op_tensor(out, device, act, {T, H}, op, "out");
  if ((shared == nullptr) != (shared_gate == nullptr)) op_fail(op, "shared and shared_gate go together");
  if (shared) {
    expect_op_tensor(*shared, device, act, {T, H}, op, "shared");
    expect_op_tensor(*shared_gate, device, act, {T, 1}, op, "shared_gate");
  }
}

}  // namespace kestrel
