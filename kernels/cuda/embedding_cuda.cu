// kernels/cuda/embedding_cuda.cu: token (+ learned position) embedding lookup and row gather.
#include "cuda/cuda_common.cuh"
#include "kquant_blocks.h"

namespace kestrel::cuda {

namespace {

constexpr int kThreads = 256;

// Element (row, col) of an embedding table as a float: dense, or dequantized from the
// layouts of QuantizedWeight (backend.h).
template <class E>
struct DenseTable {
  const E* w;
  int64_t H;
  __device__ float operator()(int64_t row, int64_t col) const { return to_float(w[row * H + col]); }
};
struct Int8Table {
  const int8_t* q;
  const float* scales;
  int64_t K, G;
  int group;
  __device__ float operator()(int64_t row, int64_t col) const {
    return scales[row * G + col / group] * static_cast<float>(q[row * K + col]);
  }
};
struct Int4Table {
  const uint8_t* q;
  const __half* scales;
  const __half* mins;
  int64_t G;
  int group;
  __device__ float operator()(int64_t row, int64_t col) const {
    const int64_t c = col % 32;  // blocks of 32 columns: low nibbles 0..15, high 16..31
    const uint8_t b = q[row * G * (group / 2) + (col / 32) * 16 + c % 16];
    const int v = c < 16 ? (b & 0xf) : (b >> 4);
    const int64_t g = row * G + col / group;
    return fmaf(__half2float(scales[g]), static_cast<float>(v), __half2float(mins[g]));
  }
};

struct KquantTable {
  const uint8_t* q;
  QuantFormat format;
  int64_t row_bytes;
  __device__ float operator()(int64_t row, int64_t col) const {
    const int columns = kquant::block_columns(format);
    const uint8_t* block = q + row * row_bytes + (col / columns) * kquant::block_bytes(format);
    return kquant::value(format, block, static_cast<int>(col % columns));
  }
};

// One block per output row (grid-stride over rows), threads across the H columns.
// ids, positions: [T] i32; wte: [V, H]; wpe: [P, H] or null; out: [T, H].
// A bad id or position is recorded and its row is written as zeros.
template <class Table, class T>
__global__ void __launch_bounds__(kThreads)
    embedding_kernel(const int32_t* ids, const int32_t* positions, Table wte, int64_t V,
                     const T* wpe, int64_t P, T* out, int64_t n_tokens, int64_t H,
                     DeviceErrorRecord* errors) {
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    const int32_t id = ids[t];
    const int32_t pos = wpe ? positions[t] : 0;
    const bool id_ok = id >= 0 && id < V;
    const bool pos_ok = !wpe || (pos >= 0 && pos < P);
    if (threadIdx.x == 0) {
      if (!id_ok) report(errors, DeviceErrorCode::embedding_id, static_cast<int>(t));
      if (!pos_ok) report(errors, DeviceErrorCode::embedding_position, static_cast<int>(t));
    }
    T* dst = out + t * H;
    if (!id_ok || !pos_ok) {
      for (int64_t i = threadIdx.x; i < H; i += blockDim.x) dst[i] = from_float<T>(0.0f);
      continue;
    }
    const T* prow = wpe ? wpe + static_cast<int64_t>(pos) * H : nullptr;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
      float v = wte(id, i);
      if (prow) v += to_float(prow[i]);
      dst[i] = from_float<T>(v);
    }
  }
}

// One block per output row (grid-stride over rows), threads across the H columns.
// x: [T, H]; rows: [B] i32; out: [B, H]. A bad row index is recorded and written as zeros.
template <class T>
__global__ void __launch_bounds__(kThreads)
    gather_rows_kernel(const T* x, int64_t n_src, const int32_t* rows, T* out, int64_t B, int64_t H,
                       DeviceErrorRecord* errors) {
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    const int32_t r = rows[b];
    T* dst = out + b * H;
    if (r < 0 || r >= n_src) {
      if (threadIdx.x == 0) report(errors, DeviceErrorCode::gather_row, static_cast<int>(b));
      for (int64_t i = threadIdx.x; i < H; i += blockDim.x) dst[i] = from_float<T>(0.0f);
      continue;
    }
    const T* src = x + static_cast<int64_t>(r) * H;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) dst[i] = src[i];
  }
}

}  // namespace

void embedding(const LaunchContext& ctx, const TensorView& ids, const TensorView& positions,
               const TensorView& wte, const TensorView* wpe, TensorView out) {
  const int64_t T = ids.dim(0), H = wte.dim(1);
  if (T == 0 || H == 0) return;
  dispatch_float(wte.dtype, "embedding", [&]<class E>() {
    embedding_kernel<<<grid_for(T, 1, 65535), kThreads, 0, ctx.stream>>>(
        ids.ptr<int32_t>(), wpe ? positions.ptr<int32_t>() : nullptr, DenseTable<E>{static_cast<const E*>(wte.data), H},
        wte.dim(0), wpe ? static_cast<const E*>(wpe->data) : nullptr, wpe ? wpe->dim(0) : 0,
        static_cast<E*>(out.data), T, H, ctx.errors);
  });
  check_launch("embedding");
}

void embedding(const LaunchContext& ctx, const TensorView& ids, const TensorView& positions,
               const QuantizedWeight& wte, const TensorView* wpe, TensorView out) {
  const int64_t T = ids.dim(0), H = wte.cols;
  if (T == 0 || H == 0) return;
  dispatch_float(out.dtype, "embedding (quantized table)", [&]<class E>() {
    auto launch = [&](auto table) {
      embedding_kernel<<<grid_for(T, 1, 65535), kThreads, 0, ctx.stream>>>(
          ids.ptr<int32_t>(), wpe ? positions.ptr<int32_t>() : nullptr, table, wte.rows,
          wpe ? static_cast<const E*>(wpe->data) : nullptr, wpe ? wpe->dim(0) : 0, static_cast<E*>(out.data), T,
          H, ctx.errors);
    };
    if (kquant::is_block_format(wte.format))
      launch(KquantTable{static_cast<const uint8_t*>(wte.data.data), wte.format,
                         wte.groups() * kquant::block_bytes(wte.format)});
    else if (wte.format == QuantFormat::int8)
      launch(Int8Table{static_cast<const int8_t*>(wte.data.data), static_cast<const float*>(wte.scales.data), H,
                       wte.groups(), wte.group_size});
    else
      launch(Int4Table{static_cast<const uint8_t*>(wte.data.data), static_cast<const __half*>(wte.scales.data),
                       static_cast<const __half*>(wte.mins.data), wte.groups(), wte.group_size});
  });
  check_launch("embedding (quantized table)");
}

void gather_rows(const LaunchContext& ctx, const TensorView& x, const TensorView& rows,
                 TensorView out) {
  const int64_t B = rows.dim(0), H = x.dim(1);
  if (B == 0 || H == 0) return;
  dispatch_float(x.dtype, "gather_rows", [&]<class E>() {
    gather_rows_kernel<E><<<grid_for(B, 1, 65535), kThreads, 0, ctx.stream>>>(
        static_cast<const E*>(x.data), x.dim(0), rows.ptr<int32_t>(), static_cast<E*>(out.data), B,
        H, ctx.errors);
  });
  check_launch("gather_rows");
}

}  // namespace kestrel::cuda
