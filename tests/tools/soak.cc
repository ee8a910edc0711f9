// kestrel_soak: one Session serving many generate calls of random prompt length, output
// length and sampling options, with its resident memory sampled as it goes (a soak test:
// scripts/soak.sh runs it; not part of ctest). Exits non-zero on any error, on a
// generation that finishes with an error, or when resident memory grows after warm-up by
// more than --max-growth-mib.
//   kestrel_soak MODEL [--calls N] [--max-new-tokens N] [--warmup N] [--seed S]
//                [--threads N] [--every N] [--max-growth-mib M] [--quant none|int8|int4]
// Prints "calls,rss_mib,tokens" every --every calls, then a summary line.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>
#include <kestrel/kestrel.h>

namespace {

double rss_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

struct Options {
  std::string model;
  long calls = 10000;
  int max_new_tokens = 16;
  long warmup = 1000;
  uint64_t seed = 1;
  int threads = 0;
  long every = 250;
  double max_growth_mib = 8.0;
  std::string quant = "none";
};

Options parse(int argc, char** argv) {
  Options o;
  if (argc < 2) {
    std::cerr << "usage: kestrel_soak MODEL [--calls N] [--max-new-tokens N] [--warmup N] [--seed S] "
                 "[--threads N] [--every N] [--max-growth-mib M] [--quant none|int8|int4]\n";
    std::exit(2);
  }
  o.model = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    if (flag == "--calls") o.calls = std::stol(v);
    else if (flag == "--max-new-tokens") o.max_new_tokens = std::stoi(v);
    else if (flag == "--warmup") o.warmup = std::stol(v);
    else if (flag == "--seed") o.seed = std::stoull(v);
    else if (flag == "--threads") o.threads = std::stoi(v);
    else if (flag == "--every") o.every = std::stol(v);
    else if (flag == "--max-growth-mib") o.max_growth_mib = std::stod(v);
    else if (flag == "--quant") o.quant = v;
    else {
      std::cerr << "kestrel_soak: unknown option " << flag << "\n";
      std::exit(2);
    }
  }
  return o;
}

// A prompt of 1 to 48 words drawn from a small list, sometimes with bytes that are not
// valid UTF-8 (which every byte-level vocab of the fixtures can encode).
std::string random_prompt(std::mt19937_64& rng) {
  static const char* const kWords[] = {"the", "quick", "brown", "fox", "jumps", "over", "a", "lazy",
                                       "dog", "Paris", "is", "capital", "of", "France", "1234",
                                       "hello,", "world!", "\n", "caf\xc3\xa9", "\xe4\xbd\xa0\xe5\xa5\xbd"};
  std::string s;
  const int n = 1 + static_cast<int>(rng() % 48);
  for (int i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += kWords[rng() % std::size(kWords)];
  }
  return s;
}

kestrel::SamplingOptions random_sampling(std::mt19937_64& rng) {
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  kestrel::SamplingOptions s;
  if (rng() % 4 == 0) return s;  // greedy
  s.temperature = 0.1f + 1.4f * unit(rng);
  s.top_k = rng() % 2 ? static_cast<int>(rng() % 100) : 0;
  s.top_p = rng() % 2 ? 0.05f + 0.95f * unit(rng) : 1.0f;
  s.min_p = rng() % 3 == 0 ? 0.2f * unit(rng) : 0.0f;
  s.repetition_penalty = rng() % 3 == 0 ? 0.8f + 0.7f * unit(rng) : 1.0f;
  s.presence_penalty = rng() % 4 == 0 ? unit(rng) : 0.0f;
  s.frequency_penalty = rng() % 4 == 0 ? unit(rng) : 0.0f;
  s.seed = rng();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    kestrel::ModelOptions model_options;
    model_options.num_threads = o.threads;
    model_options.quantization = kestrel::parse_quantization(o.quant, "--quant");
    auto model = kestrel::Model::load(o.model, model_options);
    const int max_tokens = std::min(256, model->config().max_positions);
    kestrel::Session session(model, {.max_sequences = 1, .max_sequence_tokens = max_tokens});
    kestrel::Decoder decoder(session);
    const int kv_blocks = session.free_kv_blocks();
    std::mt19937_64 rng(o.seed);
    double warm_rss = 0.0, peak_after_warmup = 0.0;
    long tokens = 0, stopped = 0;
    const auto start = std::chrono::steady_clock::now();
    std::printf("calls,rss_mib,tokens\n");
    for (long call = 1; call <= o.calls; ++call) {
      kestrel::GenerationRequest r;
      r.prompt = random_prompt(rng);
      r.sampling = random_sampling(rng);
      r.stop.max_new_tokens = 1 + static_cast<int>(rng() % static_cast<uint64_t>(o.max_new_tokens));
      r.stop.stop_at_eos = rng() % 2 == 0;
      if (rng() % 8 == 0) r.stop.stop_strings = {"."};
      // A prompt too long for the session (tiny fixtures hold 128 positions) is cut to fit.
      std::vector<int32_t> ids = model->tokenizer().encode(r.prompt);
      const size_t room = static_cast<size_t>(max_tokens - r.stop.max_new_tokens);
      if (ids.size() > room) {
        ids.resize(room);
        r.prompt_ids = std::move(ids);
      }
      kestrel::GenerationResult result = decoder.generate(r);
      if (result.finish == kestrel::FinishReason::error) {
        std::fprintf(stderr, "kestrel_soak: call %ld finished with an error: %s\n", call, result.error.c_str());
        return 1;
      }
      if (session.free_kv_blocks() != kv_blocks) {
        std::fprintf(stderr, "kestrel_soak: call %ld left %d KV blocks taken\n", call,
                     kv_blocks - session.free_kv_blocks());
        return 1;
      }
      tokens += static_cast<long>(result.tokens.size());
      stopped += result.finish != kestrel::FinishReason::length;
      const double rss = rss_mib();
      if (call == o.warmup) warm_rss = rss;
      if (call > o.warmup) peak_after_warmup = std::max(peak_after_warmup, rss);
      if (call % o.every == 0 || call == o.calls) std::printf("%ld,%.1f,%ld\n", call, rss, tokens);
      std::fflush(stdout);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double growth = o.calls > o.warmup ? peak_after_warmup - warm_rss : 0.0;
    std::printf("summary: %ld calls, %ld tokens (%ld ended before their length), %.0f s; RSS %.1f MiB "
                "after %ld warm-up calls, peak %.1f MiB after (growth %.1f MiB, limit %.1f)\n",
                o.calls, tokens, stopped, seconds, warm_rss, o.warmup, peak_after_warmup, growth,
                o.max_growth_mib);
    if (growth > o.max_growth_mib) {
      std::fprintf(stderr, "kestrel_soak: resident memory grew by %.1f MiB after warm-up\n", growth);
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kestrel_soak: %s\n", e.what());
    return 1;
  }
  return 0;
}
