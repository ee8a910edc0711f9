// kernels/cpu/w8a8_cpu.cc: the W8A8 prefill product, out = x @ w^T with both sides in int8.
//
// Each token's row of x is quantized symmetrically to int8 (scale xs[t] = max |x_t| / 127,
// round to nearest even), oneDNN's s8 x s8 -> s32 GEMM multiplies it with the int8 weight
// rows (AVX-512 VNNI / AVX2 kernels chosen by oneDNN for the processor), and the int32 sums
// are scaled back: out[t, m] = ws[m] xs[t] acc[t, m] + bias[m]. About four times the
// throughput of the f32 sgemm on the same shapes, on one core of an AVX-512 VNNI machine.
//
// oneDNN is opened at first use (dlopen, as the CUDA backend opens cuBLAS), not linked:
// libkestrel loads without it. Where it is missing, in sanitizer builds (oneDNN is not
// instrumented, and LeakSanitizer's tracer crashes on its threads) and on processors
// without VNNI, a portable int8 GEMM with int32 sums computes the same integers, slowly.
// Without VNNI (vpdpbusd), oneDNN's s8 x s8 GEMM multiplies with vpmaddubsw, whose 16-bit
// pair sums saturate (oneDNN documents it: "intermediate saturation"): on an AVX-512 Xeon
// without VNNI its sums were off by up to 7% of the output's scale.
#include <dlfcn.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/single_threaded_blas.h"
#include "cpu/thread_pool.h"

namespace kestrel::cpu {

namespace {

using GemmS8S8S32 = dnnl_status_t (*)(char, char, char, dnnl_dim_t, dnnl_dim_t, dnnl_dim_t, float, const int8_t*,
                                      dnnl_dim_t, int8_t, const int8_t*, dnnl_dim_t, int8_t, float, int32_t*,
                                      dnnl_dim_t, const int32_t*);

struct OneDnn {
  GemmS8S8S32 gemm = nullptr;
  std::string error;  // why it is unavailable
};

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KESTREL_SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KESTREL_SANITIZER_BUILD 1
#endif
#endif

// AVX512_VNNI (CPUID leaf 7.0, ECX bit 11) or AVX-VNNI (leaf 7.1, EAX bit 4): the int8
// dot products that sum u8 x s8 pairs into 32 bits without a saturating 16-bit step.
bool cpu_has_vnni() {
#if defined(__x86_64__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 11)) != 0) return true;
  return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 4)) != 0;
#else
  return false;
#endif
}

const OneDnn& onednn() {
  static const OneDnn loaded = [] {
    OneDnn d;
#ifdef KESTREL_SANITIZER_BUILD
    d.error = "a sanitizer build does not open oneDNN (uninstrumented)";
    return d;
#endif
    if (!cpu_has_vnni()) {
      d.error = "the processor has no VNNI, and oneDNN's int8 GEMM saturates 16-bit sums without it";
      return d;
    }
    void* handle = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      d.error = std::string("oneDNN (libdnnl.so.2, Debian package libdnnl2) not found: ") + dlerror();
      return d;
    }
    d.gemm = reinterpret_cast<GemmS8S8S32>(dlsym(handle, "dnnl_gemm_s8s8s32"));
    if (!d.gemm) d.error = "W8A8: libdnnl.so.2 has no dnnl_gemm_s8s8s32";
    return d;
  }();
  return loaded;
}

// acc[t, m] = sum_k x[t, k] w[m, k] in int32 (|sum| <= K * 127 * 127: no overflow below
// K = 133,000). Output rows across threads; each weight row stays in cache for every token.
void gemm_s8_portable(const int8_t* x, const int8_t* w, int32_t* acc, int64_t T, int64_t M, int64_t K, int threads) {
  parallel_for(threads_for(T * M * K, threads), M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const int8_t* wr = w + m * K;
      for (int64_t t = 0; t < T; ++t) {
        const int8_t* xr = x + t * K;
        int32_t sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += int32_t{xr[k]} * int32_t{wr[k]};
        acc[t * M + m] = sum;
      }
    }
  });
}

}  // namespace

bool w8a8_uses_onednn(std::string* why) {
  if (onednn().gemm) return true;
  if (why) *why = onednn().error;
  return false;
}

bool w8a8_eligible(const QuantizedWeight& w) {
  return w.format == QuantFormat::int8 && w.group_size == w.cols;
}

void quantize_rows_int8(const float* x, int64_t T, int64_t K, int8_t* q, float* scales, int threads) {
  parallel_for(threads_for(T * K, threads), T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* row = x + t * K;
      float amax = 0.0f;
      for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
      scales[t] = amax / 127.0f;
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      // Round to nearest even by adding and removing 1.5 * 2^23 (exact for |v| <= 127, and
      // the same as nearbyint in the default rounding mode), which the compiler vectorizes;
      // a call to nearbyintf per element cost more than the GEMM's packing.
      constexpr float kMagic = 12582912.0f;
      for (int64_t k = 0; k < K; ++k) {
        const float shifted = row[k] * inv + kMagic;  // IEEE arithmetic: not folded away
        q[t * K + k] = static_cast<int8_t>(shifted - kMagic);
      }
    }
  });
}

void w8a8_gemm(const TensorView& x, const QuantizedWeight& w, const float* bias, float* out, int threads) {
  const char* op = "quantized_linear (W8A8)";
  if (!w8a8_eligible(w)) fail(op, "W8A8 needs int8 weights with one group per row");
  const int64_t T = x.dim(0), K = w.cols, M = w.rows;
  // Per-thread buffers reused across steps: prefill steps come back with the same shapes.
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> xs;
  thread_local std::vector<int32_t> acc;
  xq.resize(static_cast<size_t>(T * K));
  xs.resize(static_cast<size_t>(T));
  acc.resize(static_cast<size_t>(T * M));
  quantize_rows_int8(x.ptr<float>(), T, K, xq.data(), xs.data(), threads);
  // Row-major acc[T, M] = xq[T, K] @ wq[M, K]^T; no zero points ('F': one fixed C offset, 0).
  const float* ws = w.scales.ptr<float>();
  const float* s = xs.data();
  int32_t* const a = acc.data();  // (a plain pointer: workers below name their own thread_locals)
  const int8_t* const xqp = xq.data();
  // Scaled back by token scale x channel scale, plus the bias, for columns m0 .. m1.
  auto epilogue = [&](int64_t m0, int64_t m1) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t m = m0; m < m1; ++m)
        out[t * M + m] = ws[m] * s[t] * static_cast<float>(a[t * M + m]) + (bias ? bias[m] : 0.0f);
  };
  if (onednn().gemm) {
    // The backend's own threads each multiply a block of output columns with oneDNN running
    // on the calling thread alone (its OpenMP thread count set to 1 there): an OpenMP team
    // of oneDNN's own would spin between the step's products while the thread pool needs
    // the same cores (a fifth of a 2-thread prefill's time, measured with perf).
    const int team = threads_for(T * M * K, threads);
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(team, (M + 63) / 64));
    const int64_t per_block = (M + blocks - 1) / blocks;
    std::atomic<int> failed{dnnl_success};
    parallel_for(team, blocks, 1, [&](int64_t b0, int64_t b1) {
      const SingleThreadedBlas single;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t m0 = b * per_block, m1 = std::min(M, m0 + per_block);
        if (m0 >= m1) continue;
        const int32_t no_offset = 0;
        const dnnl_status_t status = onednn().gemm('N', 'T', 'F', T, m1 - m0, K, 1.0f, xqp, K, 0,
                                                   w.data.ptr<int8_t>() + m0 * K, K, 0, 0.0f, a + m0, M, &no_offset);
        if (status != dnnl_success) {
          failed.store(status);
          continue;
        }
        epilogue(m0, m1);
      }
    });
    if (failed.load() != dnnl_success)
      fail(op, "oneDNN's dnnl_gemm_s8s8s32 failed with status " + std::to_string(failed.load()));
    return;
  }
  gemm_s8_portable(xqp, w.data.ptr<int8_t>(), a, T, M, K, threads);
  parallel_for(threads_for(T * M, threads), M, 64, [&](int64_t m0, int64_t m1) { epilogue(m0, m1); });
}

}  // namespace kestrel::cpu
