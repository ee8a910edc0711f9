// kernels/cuda/sampling_cuda.cu: penalties, temperature and token choice on the device, one
// block per row, with the semantics and order of kernels/cpu/sampling_cpu.cc:
//   1. repetition penalty once per distinct history token; 2. presence / frequency
//   penalties over the generated tokens; 3. temperature <= 0: argmax (lowest id on ties);
//   4. l /= temperature (steps 1-4 in place); 5-9. candidates in the order (l descending,
//   id ascending), top-k, top-p, min-p, then the inverse-CDF draw with
//   u = sampling_uniform(seed, step).
//
// Steps 5-9 never sort the vocabulary. Every filter keeps a prefix of the sorted order, so
// the kept set is "every token up to a cut-off token" and each filter, like the draw, is a
// question "which is the first token, in sorted order, whose running total exceeds a
// threshold": a radix select over the 32-bit order-preserving keys of the logits, one
// byte per pass (four passes of a 256-bin histogram in shared memory), then ties on the
// exact key resolved by id with a block scan. Probabilities p = exp(l - l_max) are taken
// in double like the CPU and summed as fixed-point integers (p * 2^44), so the sums do not
// depend on the order of the atomic adds: the result is deterministic and matches the CPU
// except where a running total lands within ~1e-13 of a threshold.
#include <cuda_runtime.h>

#include <climits>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"

namespace kestrel::cuda {

namespace {

constexpr int kThreads = 512;
constexpr double kFixedScale = 17592186044416.0;  // 2^44: p in [0, 1] as an integer

// --- the counter-based uniform of kernels/sampling_uniform.cc, bit for bit ---------------
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

__host__ __device__ inline uint64_t splitmix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The top 53 bits of the generator output: u = bits * 2^-53.
__device__ inline uint64_t uniform_bits53(uint64_t seed, uint64_t step) {
  return splitmix(splitmix(seed + kGolden) + (step + 1) * kGolden) >> 11;
}

__device__ inline double device_sampling_uniform(uint64_t seed, uint64_t step) {
  return static_cast<double>(uniform_bits53(seed, step)) * 0x1.0p-53;
}

// --- keys and the sorted order -----------------------------------------------------------
// Order-preserving key of a (non-NaN) float: a > b  <=>  key(a) > key(b). -0 is folded
// into +0, which compare equal as floats (they tie, and ties go by id).
__device__ __forceinline__ uint32_t float_key(float x) {
  if (x == 0.0f) x = 0.0f;
  const uint32_t bits = __float_as_uint(x);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// A token of the sorted order: its key and id. "j is at or before cut c" when key_j > c.key
// or (key_j == c.key and j <= c.id). Key 0 (a NaN pattern) is below every real key, so
// Cut{0, INT_MAX} keeps everything.
struct Cut {
  uint32_t key;
  int32_t id;
};

__device__ __forceinline__ bool at_or_before(uint32_t key, int64_t j, const Cut& c) {
  return key > c.key || (key == c.key && j <= c.id);
}

struct SampleShared {
  unsigned long long mass[256];  // radix histogram: summed weights per bin
  unsigned int count[256];       // radix histogram: elements per bin
  float red_v[32];               // argmax scratch
  int red_i[32];
  int scan[32];         // block scan scratch
  long long thr;        // select: the threshold on the running total
  long long cum;        // select: total before the chosen bin
  unsigned int prefix;  // select: key bits chosen so far
  unsigned int bin_count;
  unsigned long long bin_mass;
  int id;  // select: the chosen id
};

// (value, id) with the larger value, the lower id on ties; id < 0 is "none".
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
  return i >= 0 && (bi < 0 || v > bv || (v == bv && i < bi));
}

// Max of l[0 : V] and the lowest id holding it; every thread gets both.
__device__ void block_argmax(const float* l, int64_t V, SampleShared& sh, float* max_out,
                             int* id_out) {
  float bv = -INFINITY;
  int bi = -1;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {  // increasing j: first max kept
    const float x = l[j];
    if (bi < 0 || x > bv) {
      bv = x;
      bi = static_cast<int>(j);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (better(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) {
    sh.red_v[warp] = bv;
    sh.red_i[warp] = bi;
  }
  __syncthreads();
  bv = -INFINITY;
  bi = -1;
  for (int w = 0; w < kThreads / 32; ++w)
    if (better(sh.red_v[w], sh.red_i[w], bv, bi)) {
      bv = sh.red_v[w];
      bi = sh.red_i[w];
    }
  __syncthreads();
  *max_out = bv;
  *id_out = bi;
}

// Exclusive prefix sum of v over the threads of the block (in thread order).
__device__ int block_exclusive_scan(int v, SampleShared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += n;
  }
  __syncthreads();
  if (lane == 31) sh.scan[warp] = incl;
  __syncthreads();
  int offset = 0;
  for (int w = 0; w < warp; ++w) offset += sh.scan[w];
  __syncthreads();
  return offset + incl - v;
}

// The first token in sorted order, among those with in(j, x, key), whose running total of
// weight(x) (inclusive) exceeds thr_of(total), where total is the summed weight of all of
// them. Falls back to the last such token if none does (rounding; unreachable with the
// integer thresholds used here). Every thread gets the result.
template <class In, class Weight, class Threshold>
__device__ Cut select_first_over(const float* l, int64_t V, In in, Weight weight, Threshold thr_of,
                                 SampleShared& sh) {
  const int tid = threadIdx.x;
  uint32_t prefix = 0;
  // Four passes, one key byte each (most significant first), walking bins from high to low.
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    for (int b = tid; b < 256; b += blockDim.x) {
      sh.mass[b] = 0;
      sh.count[b] = 0;
    }
    __syncthreads();
    for (int64_t j = tid; j < V; j += blockDim.x) {
      const float x = l[j];
      const uint32_t key = float_key(x);
      if (pass > 0 && (key >> (shift + 8)) != prefix) continue;
      if (!in(j, x, key)) continue;
      const uint32_t bin = (key >> shift) & 255u;
      atomicAdd(&sh.count[bin], 1u);
      const unsigned long long w = weight(x);
      if (w) atomicAdd(&sh.mass[bin], w);
    }
    __syncthreads();
    if (tid == 0) {
      if (pass == 0) {
        unsigned long long total = 0;
        for (int b = 0; b < 256; ++b) total += sh.mass[b];
        sh.thr = thr_of(static_cast<long long>(total));
        sh.cum = 0;
      }
      long long cum = sh.cum, cum_at_last = sh.cum;
      int chosen = -1, last = -1;
      for (int b = 255; b >= 0; --b) {
        if (sh.count[b] == 0) continue;
        last = b;
        cum_at_last = cum;
        if (cum + static_cast<long long>(sh.mass[b]) > sh.thr) {
          chosen = b;
          break;
        }
        cum += static_cast<long long>(sh.mass[b]);
      }
      if (chosen < 0) {  // nothing exceeded: the last non-empty bin (or bin 0 if none)
        chosen = last < 0 ? 0 : last;
        cum = cum_at_last;
      }
      sh.cum = cum;
      sh.prefix = (prefix << 8) | static_cast<uint32_t>(chosen);
      sh.bin_count = sh.count[chosen];
      sh.bin_mass = sh.mass[chosen];
      sh.id = -1;
    }
    __syncthreads();
    prefix = sh.prefix;
  }

  // The key is known; its ties all weigh the same. Take the t-th lowest id among them.
  const uint32_t key = prefix;
  const long long n_ties = sh.bin_count;
  const long long w_tie = n_ties > 0 ? static_cast<long long>(sh.bin_mass) / n_ties : 0;
  long long t = 1;
  if (w_tie > 0 && sh.thr >= sh.cum) t = (sh.thr - sh.cum) / w_tie + 1;
  if (t > n_ties) t = n_ties;
  if (t < 1) t = 1;

  // Ordered selection: thread i scans ids [i * span, (i + 1) * span).
  const int64_t span = (V + blockDim.x - 1) / blockDim.x;
  const int64_t lo = tid * span, hi = min(V, lo + span);
  int mine = 0;
  for (int64_t j = lo; j < hi; ++j) {
    const float x = l[j];
    const uint32_t k = float_key(x);
    if (k == key && in(j, x, k)) ++mine;
  }
  const int before = block_exclusive_scan(mine, sh);
  if (before < t && t <= before + mine) {
    long long need = t - before;
    for (int64_t j = lo; j < hi; ++j) {
      const float x = l[j];
      const uint32_t k = float_key(x);
      if (k == key && in(j, x, k) && --need == 0) {
        sh.id = static_cast<int>(j);
        break;
      }
    }
  }
  __syncthreads();
  const Cut result{key, sh.id};
  __syncthreads();
  return result;
}

struct SampleArgs {
  float* logits;  // [B, V]
  int64_t V;
  const SamplingRow* rows;
  const int32_t* history;  // [B, max_history]
  int64_t max_history;
  const int32_t* history_lengths;
  const int32_t* prompt_lengths;
  int32_t* tokens;
  DeviceErrorRecord* errors;
};

// One block per row. Dynamic shared memory: a bitmap of V bits (the distinct-token set of
// the penalties).
__global__ void __launch_bounds__(kThreads) sample_kernel(SampleArgs a) {
  extern __shared__ uint32_t seen[];
  __shared__ SampleShared sh;
  const int row = blockIdx.x, tid = threadIdx.x;
  const int64_t V = a.V;
  float* l = a.logits + row * V;
  const SamplingRow r = a.rows[row];
  const int32_t* hist = a.history + row * a.max_history;
  const int hl = a.history_lengths[row], pl = a.prompt_lengths[row];

  // Validation (every condition is uniform over the block).
  const bool settings_ok = !isnan(r.temperature) && r.top_k >= 0 && !isnan(r.top_p) &&
                           !isnan(r.min_p) && r.repetition_penalty > 0.0f &&
                           isfinite(r.presence_penalty) && isfinite(r.frequency_penalty);
  const bool lengths_ok = hl >= 0 && hl <= a.max_history && pl >= 0 && pl <= hl;
  int bad_token = 0, has_nan = 0;
  if (lengths_ok)
    for (int k = tid; k < hl; k += blockDim.x) bad_token |= hist[k] < 0 || hist[k] >= V;
  for (int64_t j = tid; j < V; j += blockDim.x) has_nan |= isnan(l[j]);
  bad_token = __syncthreads_or(bad_token);
  has_nan = __syncthreads_or(has_nan);
  if (!settings_ok || !lengths_ok || bad_token || has_nan) {
    if (tid == 0) {
      report(a.errors,
             !settings_ok ? DeviceErrorCode::sample_settings
             : has_nan    ? DeviceErrorCode::sample_nan
                          : DeviceErrorCode::sample_history,
             row);
      a.tokens[row] = 0;
    }
    return;
  }

  // 1-2. Penalties, once per distinct token: every occurrence sets the token's bit, then
  // the one thread whose atomicAnd clears it owns the token.
  const int64_t words = (V + 31) / 32;
  if (r.repetition_penalty != 1.0f && hl > 0) {
    for (int64_t w = tid; w < words; w += blockDim.x) seen[w] = 0;
    __syncthreads();
    for (int k = tid; k < hl; k += blockDim.x) atomicOr(&seen[hist[k] / 32], 1u << (hist[k] % 32));
    __syncthreads();
    for (int k = tid; k < hl; k += blockDim.x) {
      const int32_t tok = hist[k];
      const uint32_t bit = 1u << (tok % 32);
      if (atomicAnd(&seen[tok / 32], ~bit) & bit) {
        const float x = l[tok];
        l[tok] = x > 0.0f ? __fdiv_rn(x, r.repetition_penalty) : __fmul_rn(x, r.repetition_penalty);
      }
    }
    __syncthreads();
  }
  if ((r.presence_penalty != 0.0f || r.frequency_penalty != 0.0f) && hl > pl) {
    for (int64_t w = tid; w < words; w += blockDim.x) seen[w] = 0;
    __syncthreads();
    for (int k = pl + tid; k < hl; k += blockDim.x)
      atomicOr(&seen[hist[k] / 32], 1u << (hist[k] % 32));
    __syncthreads();
    for (int k = pl + tid; k < hl; k += blockDim.x) {
      const int32_t tok = hist[k];
      const uint32_t bit = 1u << (tok % 32);
      if (atomicAnd(&seen[tok / 32], ~bit) & bit) {
        int count = 0;
        for (int k2 = pl; k2 < hl; ++k2) count += hist[k2] == tok;
        // l -= presence + frequency * count, rounded step by step like the CPU.
        l[tok] =
            __fsub_rn(l[tok], __fadd_rn(r.presence_penalty,
                                        __fmul_rn(r.frequency_penalty, static_cast<float>(count))));
      }
    }
    __syncthreads();
  }

  float m;
  int first;
  // 3. Greedy.
  if (r.temperature <= 0.0f) {
    block_argmax(l, V, sh, &m, &first);
    if (tid == 0) a.tokens[row] = first;
    return;
  }

  // 4. Temperature, in place.
  for (int64_t j = tid; j < V; j += blockDim.x) l[j] = __fdiv_rn(l[j], r.temperature);
  __syncthreads();
  block_argmax(l, V, sh, &m, &first);  // the first candidate of the sorted order
  if (!isfinite(m)) {                  // all -inf, or an +inf that wins outright
    if (tid == 0) a.tokens[row] = first;
    return;
  }
  const double max_logit = m;
  // p relative to the max, in double like the CPU, as a fixed-point integer.
  auto mass = [max_logit](float x) -> unsigned long long {
    return __double2ull_rz(exp(static_cast<double>(x) - max_logit) * kFixedScale);
  };
  auto one = [](float) -> unsigned long long { return 1ull; };

  // 6. top-k: the cut is the k-th token.
  Cut cut{0u, INT_MAX};
  if (r.top_k > 0 && r.top_k < V) {
    const long long k = r.top_k;
    cut = select_first_over(
        l, V, [](int64_t, float, uint32_t) { return true; }, one, [k](long long) { return k - 1; },
        sh);
  }
  // 7. top-p: the first token whose running p reaches top_p * (p kept so far).
  if (r.top_p < 1.0f) {
    const double top_p = r.top_p;
    const Cut c = cut;
    cut = select_first_over(
        l, V, [c](int64_t j, float, uint32_t key) { return at_or_before(key, j, c); }, mass,
        // total >= ceil(top_p * kept)  <=>  total > ceil(top_p * kept) - 1
        [top_p](long long kept) {
          return static_cast<long long>(ceil(top_p * static_cast<double>(kept))) - 1;
        },
        sh);
  }
  // 8-9. min-p (p >= min_p * p_max, with p_max = 1; the first candidate always stays) and
  // the draw: the first kept token whose running p exceeds u * Z, Z = the kept total.
  // floor(u * Z) = (bits53 * Z) >> 53 exactly, and an integer total exceeds u * Z exactly
  // when it exceeds floor(u * Z).
  const bool use_min_p = r.min_p > 0.0f;
  const double min_p = r.min_p;
  const Cut c = cut;
  const uint64_t bits53 = uniform_bits53(r.seed, r.step);
  const Cut pick = select_first_over(
      l, V,
      [=](int64_t j, float x, uint32_t key) {
        return at_or_before(key, j, c) &&
               (!use_min_p || j == first || exp(static_cast<double>(x) - max_logit) >= min_p);
      },
      mass,
      [bits53](long long z) {
        const uint64_t zu = static_cast<uint64_t>(z);
        const uint64_t hi = __umul64hi(bits53, zu), lo = bits53 * zu;
        return static_cast<long long>((hi << 11) | (lo >> 53));
      },
      sh);
  if (tid == 0) a.tokens[row] = pick.id >= 0 ? pick.id : first;
}

__global__ void uniform_kernel(const uint64_t* seeds, const uint64_t* steps, double* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = device_sampling_uniform(seeds[i], steps[i]);
}

}  // namespace

void init_sampling(size_t dynamic_bytes) {
  check(cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(dynamic_bytes)),
        "sample (shared memory opt-in)");
}

size_t sample_shared_bytes(int64_t V) { return static_cast<size_t>((V + 31) / 32) * 4; }

void sample(const LaunchContext& ctx, TensorView logits, const SamplingBatch& batch,
            TensorView tokens) {
  const int B = batch.n_seqs;
  if (B == 0) return;
  SampleArgs a;
  a.logits = logits.ptr<float>();
  a.V = logits.dim(1);
  a.rows = reinterpret_cast<const SamplingRow*>(batch.rows.data);
  a.history = batch.history.ptr<int32_t>();
  a.max_history = batch.history.dim(1);
  a.history_lengths = batch.history_lengths.ptr<int32_t>();
  a.prompt_lengths = batch.prompt_lengths.ptr<int32_t>();
  a.tokens = tokens.ptr<int32_t>();
  a.errors = ctx.errors;
  const size_t shared = sample_shared_bytes(a.V);  // within init_sampling's limit (check_sample)
  sample_kernel<<<B, kThreads, shared, ctx.stream>>>(a);
  check_launch("sample");
}

std::vector<double> device_sampling_uniform(int device_index, const std::vector<uint64_t>& seeds,
                                            const std::vector<uint64_t>& steps) {
  const char* op = "device_sampling_uniform";
  if (seeds.size() != steps.size())
    throw Error(ErrorCategory::invalid_argument,
                std::string(op) + ": seeds and steps differ in size");
  const int n = static_cast<int>(seeds.size());
  std::vector<double> out(seeds.size());
  if (n == 0) return out;
  check(cudaSetDevice(device_index), op);
  uint64_t *d_seeds = nullptr, *d_steps = nullptr;
  double* d_out = nullptr;
  const size_t bytes = sizeof(uint64_t) * seeds.size();
  cudaError_t status = cudaMalloc(&d_seeds, bytes);
  if (status == cudaSuccess) status = cudaMalloc(&d_steps, bytes);
  if (status == cudaSuccess) status = cudaMalloc(&d_out, sizeof(double) * out.size());
  if (status == cudaSuccess)
    status = cudaMemcpy(d_seeds, seeds.data(), bytes, cudaMemcpyHostToDevice);
  if (status == cudaSuccess)
    status = cudaMemcpy(d_steps, steps.data(), bytes, cudaMemcpyHostToDevice);
  if (status == cudaSuccess) {
    uniform_kernel<<<(n + 255) / 256, 256>>>(d_seeds, d_steps, d_out, n);
    status = cudaGetLastError();
  }
  if (status == cudaSuccess)
    status = cudaMemcpy(out.data(), d_out, sizeof(double) * out.size(), cudaMemcpyDeviceToHost);
  cudaFree(d_seeds);
  cudaFree(d_steps);
  cudaFree(d_out);
  check(status, op);
  return out;
}

}  // namespace kestrel::cuda
