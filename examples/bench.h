// kestrel-bench internals: one row of the table, the device's measured ceilings, and the
// output formats (bench_table.cc) and GPU measurements (bench_cuda.cc, CUDA builds only).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kestrel_bench {

// What the device can do at best, measured at start (GPU only): a large device-to-device
// copy (bytes read + written per second) and a large cuBLAS GEMM in the model's dtype.
struct DeviceCeilings {
  std::string name;           // e.g. "NVIDIA H100 80GB HBM3"
  double bandwidth = 0.0;     // bytes/s
  double flop_rate = 0.0;     // FLOP/s
  size_t memory_bytes = 0;    // device memory
};

// One case of the grid, medians over the repeats.
struct CaseResult {
  int batch = 0, input = 0, output = 0;
  double context_seconds = 0.0;    // prompts in, first token of every sequence out
  double per_token_seconds = 0.0;  // each later generation step
  double total_seconds = 0.0;      // whole generate() call
  double tokens_per_second = 0.0;  // batch * output / total
  size_t weight_bytes = 0;         // Model::weight_bytes()
  size_t session_bytes = 0;        // Session::memory().total()
  std::string kv_dtype;            // the session's KV cache dtype
  size_t peak_rss_bytes = 0;       // process high-water mark so far (CPU)
  size_t device_used_bytes = 0;    // cudaMemGetInfo total - free after the case (GPU)
  // Achieved rates, from the byte and FLOP counts of tools/sizing.h.
  double gen_bytes_per_step = 0.0;    // weights streamed + KV read, mean over the steps
  double gen_bandwidth = 0.0;         // gen_bytes_per_step / per_token_seconds
  double gen_flop_rate = 0.0;
  double context_flop_rate = 0.0;     // context-phase FLOPs / context_seconds
};

struct BenchReport {
  std::string model, device, dtype, kv_dtype;
  int threads = 0;
  int tp = 1, pp = 1;  // tensor / pipeline parallel split (rank 0 reports; bytes are per rank)
  int warmup = 0, repeats = 0;
  unsigned long long seed = 0;
  DeviceCeilings ceilings;  // zeros on the CPU
  std::string date;         // UTC, ISO 8601
  std::vector<CaseResult> cases;
};

void print_table(const BenchReport& report);
nlohmann::json to_json(const BenchReport& report);
// Draws tokens/s against batch size, one line per input length (and output length), with
// scripts/plot-bench.py ($KESTREL_PLOT_PYTHON or python3, with matplotlib); throws kestrel::Error naming what is missing.
void plot(const BenchReport& report, const std::string& png_path);
// Throws kestrel::Error when plot() could not work (no python3, script or matplotlib).
void check_plot_tools();

#ifdef KESTREL_WITH_CUDA
// bench_cuda.cc: `dtype` is the model's ("f16", "bf16", "f32").
DeviceCeilings measure_device_ceilings(int device, const std::string& dtype);
// Waits for all work on the device (every stream), so host clocks bracket device time.
void synchronize_device(int device);
size_t device_memory_used(int device);
#endif

}  // namespace kestrel_bench
