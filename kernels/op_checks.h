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
int check_attention_params(const AttentionParams& params, const char* op);

}  // namespace kestrel
