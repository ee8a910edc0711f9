// kestrel-bench output: the table on stdout, the JSON document, and the plot (through
// scripts/plot-bench.py, python3 + matplotlib).
#include <fmt/core.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <kestrel/error.h>
#include <string>
#include <unistd.h>

#include "bench.h"

namespace kestrel_bench {

namespace {

double mib(size_t bytes) { return bytes / (1024.0 * 1024.0); }

bool on_gpu(const BenchReport& r) { return r.ceilings.bandwidth > 0; }

std::string plot_script() {
  if (const char* env = std::getenv("KESTREL_PLOT_SCRIPT"); env && *env) return env;
  return KESTREL_PLOT_SCRIPT;
}

// The interpreter: $KESTREL_PLOT_PYTHON (e.g. a venv with matplotlib), else python3.
std::string python() {
  if (const char* env = std::getenv("KESTREL_PLOT_PYTHON"); env && *env) return env;
  return "python3";
}

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

void print_table(const BenchReport& r) {
  fmt::print("# kestrel-bench  model {} | device {} | dtype {}, KV cache {} | threads {} | tp {} x pp {} | warm-up {}, "
             "repeats {} (medians) | {}\n",
             r.model, r.device, r.dtype, r.kv_dtype, r.threads > 0 ? std::to_string(r.threads) : "all", r.tp, r.pp, r.warmup,
             r.repeats, r.date);
  if (on_gpu(r))
    fmt::print("# device {}: measured ceilings {:.0f} GB/s (device-to-device copy), {:.1f} TFLOP/s (cuBLAS GEMM, {})\n",
               r.ceilings.name, r.ceilings.bandwidth / 1e9, r.ceilings.flop_rate / 1e12, r.dtype);
  else
    fmt::print("# CPU: gen GB/s = (weights + KV read per step) / per-token latency; no ceilings measured\n");
  fmt::print("{:>5} {:>6} {:>6} | {:>10} {:>10} {:>10} | {:>9} | {:>9} {:>9} | {:>8} {:>5} | {:>9} {:>5}\n", "batch",
             "input", "output", "context ms", "token ms", "total ms", "tokens/s", "model MiB",
             on_gpu(r) ? "used MiB" : "RSS MiB", "gen GB/s", "BW%", "ctx GF/s", "FL%");
  for (const auto& c : r.cases) {
    std::string bw = "-", fl = "-";
    if (on_gpu(r)) {
      bw = fmt::format("{:.0f}", 100.0 * c.gen_bandwidth / r.ceilings.bandwidth);
      fl = fmt::format("{:.0f}", 100.0 * c.context_flop_rate / r.ceilings.flop_rate);
    }
    fmt::print("{:5} {:6} {:6} | {:10.2f} {:10.3f} {:10.2f} | {:9.1f} | {:9.1f} {:9.1f} | {:8.2f} {:>5} | {:9.1f} {:>5}\n",
               c.batch, c.input, c.output, 1e3 * c.context_seconds, 1e3 * c.per_token_seconds,
               1e3 * c.total_seconds, c.tokens_per_second, mib(c.weight_bytes + c.session_bytes),
               mib(on_gpu(r) ? c.device_used_bytes : c.peak_rss_bytes), c.gen_bandwidth / 1e9, bw,
               c.context_flop_rate / 1e9, fl);
  }
  fmt::print("# context: prompts in, first token out; token: each later step; tokens/s = batch x output / total;\n"
             "# model MiB = weights + session (KV cache + activations); BW% = gen GB/s / copy ceiling; "
             "FL% = context FLOP rate / GEMM ceiling\n");
}

nlohmann::json to_json(const BenchReport& r) {
  nlohmann::json cases = nlohmann::json::array();
  for (const auto& c : r.cases) {
    nlohmann::json j = {{"batch", c.batch},
                        {"input", c.input},
                        {"output", c.output},
                        {"context_ms", 1e3 * c.context_seconds},
                        {"per_token_ms", 1e3 * c.per_token_seconds},
                        {"total_ms", 1e3 * c.total_seconds},
                        {"tokens_per_second", c.tokens_per_second},
                        {"weight_bytes", c.weight_bytes},
                        {"session_bytes", c.session_bytes},
                        {"peak_rss_bytes", c.peak_rss_bytes},
                        {"gen_bytes_per_step", c.gen_bytes_per_step},
                        {"gen_bandwidth_bytes_per_second", c.gen_bandwidth},
                        {"gen_flop_rate", c.gen_flop_rate},
                        {"context_flop_rate", c.context_flop_rate}};
    if (on_gpu(r)) {
      j["device_used_bytes"] = c.device_used_bytes;
      j["gen_bandwidth_fraction"] = c.gen_bandwidth / r.ceilings.bandwidth;
      j["gen_flop_fraction"] = c.gen_flop_rate / r.ceilings.flop_rate;
      j["context_flop_fraction"] = c.context_flop_rate / r.ceilings.flop_rate;
    }
    cases.push_back(j);
  }
  nlohmann::json j = {{"model", r.model},   {"device", r.device}, {"dtype", r.dtype},
                      {"kv_dtype", r.kv_dtype}, {"threads", r.threads}, {"tp", r.tp},         {"pp", r.pp},
                      {"warmup", r.warmup},   {"repeats", r.repeats},
                      {"seed", r.seed},     {"date", r.date},     {"cases", cases}};
  if (on_gpu(r))
    j["ceilings"] = {{"name", r.ceilings.name},
                     {"bandwidth_bytes_per_second", r.ceilings.bandwidth},
                     {"flop_rate", r.ceilings.flop_rate},
                     {"memory_bytes", r.ceilings.memory_bytes}};
  return j;
}

void check_plot_tools() {
  const std::string script = plot_script();
  if (!std::filesystem::exists(script))
    throw kestrel::Error(kestrel::ErrorCategory::io, "--plot: " + script + " is missing (set KESTREL_PLOT_SCRIPT)");
  const int status = std::system((quoted(python()) + " " + quoted(script) + " --check").c_str());
  if (status != 0)
    throw kestrel::Error(kestrel::ErrorCategory::unsupported,
                         "--plot needs " + python() +
                             " with matplotlib (Debian: apt-get install python3-matplotlib; or set "
                             "KESTREL_PLOT_PYTHON to a Python that has it); " + script + " --check failed");
}

void plot(const BenchReport& r, const std::string& png_path) {
  const auto json_path =
      std::filesystem::temp_directory_path() / ("kestrel-bench-" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(json_path);
    out << to_json(r).dump();
    if (!out) throw kestrel::Error(kestrel::ErrorCategory::io, json_path.string() + ": cannot write");
  }
  const int status =
      std::system((quoted(python()) + " " + quoted(plot_script()) + " " + quoted(json_path.string()) + " " + quoted(png_path)).c_str());
  std::filesystem::remove(json_path);
  if (status != 0)
    throw kestrel::Error(kestrel::ErrorCategory::io, "--plot: " + plot_script() + " failed to write " + png_path);
  fmt::print(stderr, "[kestrel-bench] wrote {}\n", png_path);
}

}  // namespace kestrel_bench
