// kernels/cpu/linear_cpu.cc: dense layer through OpenBLAS sgemm.
#include <cblas.h>

#include "cpu/cpu_ops.h"
#include "cpu/thread_pool.h"

namespace kestrel::cpu {

// x: [T, K]; w: [M, K] (rows are output features); bias: [M] or null; out: [T, M].
// out = x @ w^T in one row-major sgemm with w transposed (OpenBLAS threads itself), then
// the bias is added row by row.
void linear(const TensorView& x, const TensorView& w, const TensorView* bias, TensorView out,
            int threads) {
  const char* op = "linear";
  expect_tensor(x, DType::f32, {-1, -1}, op, "x");
  const int64_t T = x.dim(0), K = x.dim(1);
  expect_tensor(w, DType::f32, {-1, K}, op, "w");
  const int64_t M = w.dim(0);
  expect_tensor(out, DType::f32, {T, M}, op, "out");
  if (bias) expect_tensor(*bias, DType::f32, {M}, op, "bias");
  if (T == 0 || M == 0) return;

  float* o = out.ptr<float>();
  if (K == 0) {
    for (int64_t i = 0; i < T * M; ++i) o[i] = 0.0f;
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(T),
                static_cast<blasint>(M), static_cast<blasint>(K), 1.0f, x.ptr<float>(),
                static_cast<blasint>(K), w.ptr<float>(), static_cast<blasint>(K), 0.0f, o,
                static_cast<blasint>(M));
  }
  if (bias) {
    const float* b = bias->ptr<float>();
    parallel_for(threads_for(T * M, threads), T, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t m = 0; m < M; ++m) o[t * M + m] += b[m];
    });
  }
}

}  // namespace kestrel::cpu
