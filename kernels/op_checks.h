// kernels/op_checks.h: input validation shared by every backend (the device-independent
// front end of each operation). Failures throw Error(internal) naming the operation and
// the tensor: a wrong call is a bug in the runtime, not bad user input.
#pragma once

#include <initializer_list>
#include <string>

#include "backend.h"

namespace kestrel {

[[noreturn]] void op_fail(const char* op, const std::string& message);

// Throws unless `t` lives on `device`, has `dtype` and exactly `shape` (-1 matches any
// size), and is non-null when it has elements.
void expect_op_tensor(const TensorView& t, Device device, DType dtype,
                      std::initializer_list<int64_t> shape, const char* op, const char* name);

// Checks head counts, scale and rotary settings of an attention call; returns the number
// of leading dimensions of each head that rotate (0 without rotary).
// The rotary inverse frequencies must be [rot / 2] f32 on `device`.
int check_attention_params(Device device, const AttentionParams& params, const char* op);

// Checks a quantized_linear call on `device`: the weight's format, group size and the
// shapes and dtypes of its tensors, x [T, K] in `act` dtype, bias [M] in `act`, out [T, M]
// in `act` or f32.
void check_quantized_linear(Device device, DType act, const TensorView& x, const QuantizedWeight& w,
                            const TensorView* bias, const TensorView& out, const char* op);
// The weight part of that: format, group size, and its tensors' shapes and dtypes.
void check_quantized_weight(Device device, const QuantizedWeight& w, const char* op);
// An embedding lookup in a quantized table: ids [T] i32, wte [V, H], out [T, H] f32 / f16 /
// bf16, wpe [P, H] in out's dtype with positions [T] i32. (Ids are checked by the backend.)
void check_quantized_embedding(Device device, const TensorView& ids, const TensorView& positions,
                               const QuantizedWeight& wte, const TensorView* wpe, const TensorView& out);

}  // namespace kestrel
