// kestrel-bench: FasterTransformer-style latency and throughput table over batch size x
// input length x output length, through the public API (Model / Session / Decoder).
//
//   kestrel-bench [--model PATH | --synthetic PRESET] [--batch 1,8,32] [--input 128,512] [--output 32,128]
//                 [--warmup 1] [--repeats 3] [--json] [--plot FILE.png] [--device cuda] ...
//
// --synthetic PRESET benchmarks a model of a named shape (kestrel-size --list-presets: gpt2-xl,
// tinyllama-1.1b, ...) with random weights made in memory (Model::random), where no model
// file is at hand (a GPU machine that files cannot reach).
//
// Each case runs `batch` requests of `input` random prompt token ids (fixed seed) with
// greedy decoding, EOS ignored, exactly `output` new tokens each, in one session sized for
// the case (max_sequences = batch, max_step_tokens = batch x input unless capped, so the
// whole context phase is one step as in FasterTransformer). Per repeat it times two calls
// of Decoder::generate: one generating 1 token (the context latency: prompts in, first
// tokens out) and one generating `output` tokens (the total latency); the per-token
// generation latency is (total - context) / (output - 1). Medians over the repeats, after
// the warm-up runs. On a GPU the device is synchronized before each clock read.
//
// Rates, from the byte and FLOP counts of tools/sizing.h (a model file's weights as the
// loader holds them, tools/held_weights.h; random weights' from their shape and --quant):
//   gen bandwidth  (weights read per step + KV read per step at the mean context length)
//                  / per-token latency; the embedding tables are not counted (a step
//                  gathers a few rows) unless the LM head is tied to them;
//   FLOP rates     linear layers 2 x tokens x weights, attention 4 x scores x head_dim,
//                  LM head for the rows whose logits are computed;
// and on a GPU, as fractions of the ceilings measured at start (bench_cuda.cc).
// Progress on stderr; the table (or --json) on stdout.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fmt/core.h>
#include <ctime>
#include <fstream>
#include <iostream>
#include <kestrel/kestrel.h>
#include <random>
#include <sstream>

#include "bench.h"
#include "cli_options.h"
#include "models/model_state.h"
#include "tools/sizing.h"

namespace {

using kestrel::Error;
using kestrel::ErrorCategory;
using kestrel_bench::CaseResult;

struct BenchArgs {
  std::vector<int> batch = {1, 2, 4, 8, 16, 32, 64};
  std::vector<int> input = {128, 512, 2048};
  std::vector<int> output = {8, 128, 512};
  bool lengths_given = false;  // --input or --output on the command line
  int warmup = 1;
  int repeats = 3;
  int max_step_tokens = 0;  // 0: batch x input
  int kv_block_size = 16;
  kestrel::SessionOptions session;  // --kv-dtype (the model flags' session settings)
  unsigned long long seed = 1234;
  bool json = false;
  std::string plot;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Peak resident set (VmHWM) of this process, from /proc; 0 where unavailable.
size_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return 1024 * std::stoull(line.substr(6));  // kB
  return 0;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return text;
}

void check_grid(const BenchArgs& a, const kestrel::Model& model) {
  auto positive = [](const std::vector<int>& v, const char* flag, int hi) {
    if (v.empty()) throw Error(ErrorCategory::invalid_argument, std::string(flag) + " is empty");
    for (int x : v)
      if (x < 1 || x > hi)
        throw Error(ErrorCategory::invalid_argument,
                    std::string(flag) + " value " + std::to_string(x) + " is out of range [1, " + std::to_string(hi) + "]");
  };
  positive(a.batch, "--batch", 4096);
  positive(a.input, "--input", 1 << 20);
  positive(a.output, "--output", 1 << 20);
  if (a.warmup < 0) throw Error(ErrorCategory::invalid_argument, "--warmup must be >= 0");
  if (a.repeats < 1) throw Error(ErrorCategory::invalid_argument, "--repeats must be >= 1");
  if (a.max_step_tokens < 0) throw Error(ErrorCategory::invalid_argument, "--max-step-tokens must be >= 0");
  const int limit = model.config().max_positions;
  if (!a.lengths_given) return;  // the default lengths skip the cases over the limit instead
  for (int in : a.input)
    for (int out : a.output)
      if (in + out > limit)
        throw Error(ErrorCategory::limit, "--input " + std::to_string(in) + " + --output " + std::to_string(out) +
                                              " = " + std::to_string(in + out) + " tokens exceeds the model's " +
                                              std::to_string(limit) + " positions (" + model.path().string() + ")");
}

class Clock {
 public:
  explicit Clock(const kestrel::Model& model) : model_(model) {}
  double now() const {
    sync();
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

 private:
  void sync() const {
#ifdef KESTREL_WITH_CUDA
    if (model_.device().kind == kestrel::DeviceKind::cuda) kestrel_bench::synchronize_device(model_.device().index);
#endif
  }
  [[maybe_unused]] const kestrel::Model& model_;  // read only by the CUDA build
};

// The shape the byte and FLOP counts come from: the model's files (their tensor table: the
// weights as the loader holds them), or the architecture of random weights.
kestrel::sizing::ModelShape sizing_shape(const kestrel::Model& model, bool synthetic) {
  return synthetic ? kestrel::sizing::shape_of(model.state().arch) : kestrel::sizing::read_model_shape(model.path());
}

CaseResult run_case(const std::shared_ptr<const kestrel::Model>& model, const BenchArgs& a,
                    const kestrel::sizing::ModelShape& shape, const kestrel::ModelOptions& load_options, int batch,
                    int input, int output) {
  kestrel::SessionOptions so = a.session;
  so.max_sequences = batch;
  so.max_sequence_tokens = input + output;
  so.max_step_tokens = a.max_step_tokens > 0 ? std::max(a.max_step_tokens, batch) : batch * input;
  so.kv_block_size = a.kv_block_size;
  kestrel::Session session(model, so);
  kestrel::Decoder decoder(session);

  std::vector<kestrel::GenerationRequest> requests(static_cast<size_t>(batch));
  const int vocab = model->tokenizer().vocab_size();
  for (int i = 0; i < batch; ++i) {
    std::mt19937_64 rng(a.seed + 1000003ull * i + 7919ull * input);
    std::uniform_int_distribution<int> token(0, vocab - 1);
    auto& r = requests[static_cast<size_t>(i)];
    r.prompt_ids.resize(static_cast<size_t>(input));
    for (auto& id : r.prompt_ids) id = token(rng);
    r.sampling.temperature = 0.0f;
    r.stop.stop_at_eos = false;
  }
  const Clock clock(*model);
  auto timed = [&](int new_tokens) {
    for (auto& r : requests) r.stop.max_new_tokens = new_tokens;
    const double t0 = clock.now();
    auto results = decoder.generate(requests);
    const double t1 = clock.now();
    for (const auto& res : results)
      if (res.finish != kestrel::FinishReason::length || static_cast<int>(res.tokens.size()) != new_tokens)
        throw Error(ErrorCategory::internal, "a benchmark request ended early (" +
                                                 std::string(kestrel::to_string(res.finish)) + " " + res.error + ")");
    return t1 - t0;
  };
  for (int i = 0; i < a.warmup; ++i) timed(output);
  std::vector<double> context, total;
  for (int i = 0; i < a.repeats; ++i) {
    context.push_back(timed(1));
    total.push_back(timed(output));
  }

  CaseResult r;
  r.batch = batch;
  r.input = input;
  r.output = output;
  r.context_seconds = median(context);
  r.total_seconds = median(total);
  r.per_token_seconds = output > 1 ? std::max(0.0, r.total_seconds - r.context_seconds) / (output - 1) : 0.0;
  r.tokens_per_second = batch * static_cast<double>(output) / r.total_seconds;
  r.weight_bytes = model->weight_bytes();
  r.session_bytes = session.memory().total();
  r.kv_dtype = kestrel::to_string(*session.options().kv_dtype);
  r.peak_rss_bytes = peak_rss_bytes();
#ifdef KESTREL_WITH_CUDA
  if (model->device().kind == kestrel::DeviceKind::cuda) r.device_used_bytes = kestrel_bench::device_memory_used(model->device().index);
#endif

  // Byte and FLOP counts of this case, one rank, as the sizing calculator computes them.
  namespace sz = kestrel::sizing;
  sz::SizingOptions options;
  options.device = model->device().kind;
  options.dtype = model->dtype();
  options.tp = model->parallel().tensor_parallel;  // bytes and FLOPs of this rank's slice
  options.pp = model->parallel().pipeline_parallel;
  options.quantization = load_options.quantization;
  options.group_size = load_options.quant_group_size;
  options.session = so;
  const sz::Sizing sizing = sz::compute(shape, options);
  const sz::StageSizing& stage = sizing.largest();
  const double mean_context = input + 0.5 * output;  // the cache grows from input to input + output - 1
  const sz::StepCost step = sz::decode_step_cost(shape, options, stage, batch, mean_context);
  const sz::StepCost ctx = sz::context_step_cost(shape, options, stage, batch, input);
  r.gen_bytes_per_step = step.bytes;
  if (r.per_token_seconds > 0) {
    r.gen_bandwidth = step.bytes / r.per_token_seconds;
    r.gen_flop_rate = step.flops / r.per_token_seconds;
  }
  r.context_flop_rate = ctx.flops / r.context_seconds;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Latency and throughput of a Kestrel model over batch x input x output", "kestrel-bench"};
  kestrel_examples::ModelArgs model_args;
  BenchArgs args;
  kestrel_examples::add_model_options(app, model_args);
  kestrel_examples::add_parallel_options(app, model_args);
  std::string synthetic;
  app.add_option("--synthetic", synthetic,
                 "Random weights of a named shape instead of a model file (kestrel-size --list-presets)")
      ->excludes(app.get_option("--model"));
  app.add_option("--batch", args.batch, "Batch sizes (concurrent sequences)")->delimiter(',')->capture_default_str();
  auto* i = app.add_option("--input", args.input, "Prompt lengths in tokens")->delimiter(',')->capture_default_str();
  auto* o = app.add_option("--output", args.output, "Generated tokens per sequence")->delimiter(',')->capture_default_str();
  app.add_option("--warmup", args.warmup, "Untimed runs per case")->capture_default_str();
  app.add_option("--repeats", args.repeats, "Timed runs per case (medians are reported)")->capture_default_str();
  app.add_option("--max-step-tokens", args.max_step_tokens,
                 "Cap on prompt tokens per context step (0: batch x input, one step)")->capture_default_str();
  app.add_option("--kv-block-size", args.kv_block_size, "Positions per KV-cache block")->capture_default_str();
  app.add_option("--seed", args.seed, "Seed of the random prompt ids")->capture_default_str();
  app.add_flag("--json", args.json, "Print JSON instead of the table");
  app.add_option("--plot", args.plot, "Also draw tokens/s against batch size into this PNG (needs python3-matplotlib)");
  CLI11_PARSE(app, argc, argv);
  args.lengths_given = i->count() + o->count() > 0;

  try {
    if (!args.plot.empty()) kestrel_bench::check_plot_tools();  // fail before a long run, not after
    auto model = synthetic.empty()
                     ? kestrel_examples::load_model(model_args)
                     : kestrel::Model::random(kestrel::sizing::preset_shape(synthetic).config,
                                              kestrel_examples::model_options(model_args));
    check_grid(args, *model);
    args.session = kestrel_examples::with_model_args({}, model_args);
    const kestrel::ModelOptions load_options = kestrel_examples::model_options(model_args);
    const kestrel::sizing::ModelShape shape = sizing_shape(*model, !synthetic.empty());
    kestrel_bench::BenchReport report;
    report.model = model->path().string();
    report.device = kestrel::to_string(model->device());
    report.dtype = kestrel::to_string(model->dtype());
    report.threads = model_args.threads;
    report.tp = model->parallel().tensor_parallel;
    report.pp = model->parallel().pipeline_parallel;
    const bool output = kestrel_examples::is_output_rank();  // every rank runs, rank 0 reports
    report.warmup = args.warmup;
    report.repeats = args.repeats;
    report.seed = args.seed;
    report.date = utc_now();
#ifdef KESTREL_WITH_CUDA
    if (model->device().kind == kestrel::DeviceKind::cuda) {
      std::cerr << "[kestrel-bench] measuring the device's copy bandwidth and GEMM rate..." << std::endl;
      report.ceilings = kestrel_bench::measure_device_ceilings(model->device().index, report.dtype);
    }
#endif
    std::vector<std::array<int, 3>> cases;
    const int limit = model->config().max_positions;
    for (int in : args.input)
      for (int out : args.output)
        for (int batch : args.batch) {
          if (in + out > limit) continue;  // only with the default lengths (check_grid)
          cases.push_back({batch, in, out});
        }
    if (cases.size() < args.input.size() * args.output.size() * args.batch.size())
      std::cerr << "[kestrel-bench] skipping the default lengths' cases longer than the model's " << limit
                << " positions\n";
    if (cases.empty()) throw Error(ErrorCategory::limit, "no case of the grid fits the model's positions");
    const auto start = std::chrono::steady_clock::now();
    for (size_t n = 0; n < cases.size(); ++n) {
      const auto [batch, in, out] = cases[n];
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (output)
        fmt::print(stderr, "[kestrel-bench] case {}/{}: batch {}, input {}, output {} ({:.0f} s elapsed)\n", n + 1,
                   cases.size(), batch, in, out, elapsed);
      report.cases.push_back(run_case(model, args, shape, load_options, batch, in, out));
    }
    report.kv_dtype = report.cases.front().kv_dtype;  // the same session options in every case
    if (!output) return 0;
    if (args.json) std::cout << kestrel_bench::to_json(report).dump(2) << std::endl;
    else kestrel_bench::print_table(report);
    if (!args.plot.empty()) kestrel_bench::plot(report, args.plot);
    return 0;
  } catch (const kestrel::Error& e) {
    return kestrel_examples::report_error("kestrel-bench", e);
  }
}
