// kernels/cpu/embedding_cpu.cc: token (+ learned position) embedding lookup and row gather.
#include <cstring>

#include "cpu/cpu_ops.h"
#include "cpu/thread_pool.h"

namespace kestrel::cpu {

namespace {
// Throws unless every index in `idx` lies in [0, limit).
void expect_indices(const TensorView& idx, int64_t limit, const char* op, const char* name) {
  const int32_t* p = idx.ptr<int32_t>();
  for (int64_t i = 0; i < idx.numel(); ++i)
    if (p[i] < 0 || p[i] >= limit)
      fail(op, std::string(name) + "[" + std::to_string(i) + "] = " + std::to_string(p[i]) +
                   " is outside [0, " + std::to_string(limit) + ")");
}
}  // namespace

// ids, positions: [T] i32; wte: [V, H]; wpe: [P, H] or null; out: [T, H].
// One row per token; rows are independent.
void embedding(const TensorView& ids, const TensorView& positions, const TensorView& wte,
               const TensorView* wpe, TensorView out, int threads) {
  const char* op = "embedding";
  expect_tensor(ids, DType::i32, {-1}, op, "ids");
  const int64_t T = ids.dim(0);
  expect_tensor(wte, DType::f32, {-1, -1}, op, "wte");
  const int64_t H = wte.dim(1);
  expect_tensor(out, DType::f32, {T, H}, op, "out");
  expect_indices(ids, wte.dim(0), op, "ids");
  const float* pe = nullptr;
  const int32_t* pos = nullptr;
  if (wpe) {
    expect_tensor(*wpe, DType::f32, {-1, H}, op, "wpe");
    expect_tensor(positions, DType::i32, {T}, op, "positions");
    expect_indices(positions, wpe->dim(0), op, "positions");
    pe = wpe->ptr<float>();
    pos = positions.ptr<int32_t>();
  }
  const int32_t* id = ids.ptr<int32_t>();
  const float* te = wte.ptr<float>();
  float* o = out.ptr<float>();

  parallel_for(threads_for(T * H, threads), T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* row = te + static_cast<int64_t>(id[t]) * H;
      float* dst = o + t * H;
      if (pe) {
        const float* prow = pe + static_cast<int64_t>(pos[t]) * H;
        for (int64_t i = 0; i < H; ++i) dst[i] = row[i] + prow[i];
      } else {
        std::memcpy(dst, row, static_cast<size_t>(H) * sizeof(float));
      }
    }
  });
}

// The same from a quantized table: each token's row dequantized into out, then the
// position row added.
void embedding(const TensorView& ids, const TensorView& positions, const QuantizedWeight& wte,
               const TensorView* wpe, TensorView out, int threads) {
  const char* op = "embedding (quantized table)";
  check_quantized_embedding(Device::cpu(), ids, positions, wte, wpe, out);
  if (out.dtype != DType::f32) fail(op, "the CPU backend computes in f32");
  expect_indices(ids, wte.rows, op, "ids");
  if (wpe) expect_indices(positions, wpe->dim(0), op, "positions");
  const int64_t T = ids.dim(0), H = wte.cols;
  const int32_t* id = ids.ptr<int32_t>();
  float* o = out.ptr<float>();
  parallel_for(threads_for(T * H, threads), T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* dst = o + t * H;
      dequantize_weight_rows(wte, id[t], 1, dst);
      if (wpe) {
        const float* prow = wpe->ptr<float>() + static_cast<int64_t>(positions.ptr<int32_t>()[t]) * H;
        for (int64_t i = 0; i < H; ++i) dst[i] += prow[i];
      }
    }
  });
}

// x: [T, H]; rows: [B] i32; out: [B, H].
void gather_rows(const TensorView& x, const TensorView& rows, TensorView out, int threads) {
  const char* op = "gather_rows";
  expect_tensor(x, DType::f32, {-1, -1}, op, "x");
  expect_tensor(rows, DType::i32, {-1}, op, "rows");
  const int64_t B = rows.dim(0), H = x.dim(1);
  expect_tensor(out, DType::f32, {B, H}, op, "out");
  expect_indices(rows, x.dim(0), op, "rows");
  const float* src = x.ptr<float>();
  const int32_t* r = rows.ptr<int32_t>();
  float* dst = out.ptr<float>();

  parallel_for(threads_for(B * H, threads), B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) std::memcpy(dst + b * H, src + static_cast<int64_t>(r[b]) * H,
                  static_cast<size_t>(H) * sizeof(float));
  });
}

}  // namespace kestrel::cpu
