// core/fp8.h: OCP FP8 E4M3 ("e4m3fn", as CUDA's __nv_fp8_e4m3 and PyTorch's
// float8_e4m3fn) on the host: 1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits, no
// infinities, S.1111.111 is NaN, largest finite value 448, smallest subnormal 2^-9.
#pragma once

#include <cstdint>

namespace kestrel {

inline constexpr float kFp8E4m3Max = 448.0f;

// Exact.
float fp8_e4m3_to_f32(uint8_t v);
// Round to nearest, ties to even; values beyond +-448, infinities included, saturate to
// +-448 (CUDA's __nv_cvt_float_to_fp8 with __NV_SATFINITE, what FP8 GEMM inputs use);
// NaN gives NaN (0x7f).
uint8_t f32_to_fp8_e4m3(float f);

// Rounds each of the `rows` rows of x [rows, cols] to e4m3 with one scale per row
// (max |row| / 448) and back, in place: what an FP8 GEMM with per-token activation
// scales computes with.
void fake_quantize_rows_fp8(float* x, int64_t rows, int64_t cols);

}  // namespace kestrel
