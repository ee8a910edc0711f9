// kestrel-perplexity: perplexity of a model on a text file, as llama.cpp's perplexity tool
// computes it, so the two can be compared on the same file (scripts/llamacpp-perplexity.py):
// the text is tokenized whole (no BOS), cut into chunks of --context tokens, each chunk is
// scored on its own (a fresh context), and the negative log-likelihood is averaged over the
// second half of every chunk (tokens that see at least context/2 tokens before them).
//
//   kestrel-perplexity --model M --text FILE [--context 512] [--quant int8|int4]
//
// Prints one line per chunk and the final perplexity (and the token count) on stdout.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <fmt/core.h>
#include <fstream>
#include <iostream>
#include <kestrel/kestrel.h>
#include <sstream>
#include <string>
#include <vector>

#include "cli_options.h"

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw kestrel::Error(kestrel::ErrorCategory::io, path + ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// -log softmax(row)[target], in double.
double nll(const float* row, int vocab, int target) {
  double max = row[0];
  for (int v = 1; v < vocab; ++v) max = std::max(max, static_cast<double>(row[v]));
  double sum = 0.0;
  for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - max);
  return std::log(sum) + max - row[target];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Perplexity of a model on a text file (llama.cpp's protocol: chunks, second halves scored)"};
  kestrel_examples::ModelArgs model_args;
  kestrel_examples::add_model_options(app, model_args);
  std::string text_path;
  int context = 512;
  app.add_option("--text", text_path, "UTF-8 text file")->required();
  app.add_option("--context", context, "Tokens per chunk")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    if (context < 4)
      throw kestrel::Error(kestrel::ErrorCategory::invalid_argument,
                           "--context = " + std::to_string(context) + " (must be at least 4)");
    auto model = kestrel_examples::load_model(model_args);
    const std::vector<int32_t> tokens = model->tokenizer().encode(read_text(text_path), /*parse_special=*/false);
    const int chunks = static_cast<int>(tokens.size() / context);
    if (chunks == 0)
      throw kestrel::Error(kestrel::ErrorCategory::invalid_argument,
                           text_path + ": " + std::to_string(tokens.size()) + " tokens, fewer than --context " +
                               std::to_string(context));
    kestrel::SessionOptions options = kestrel_examples::with_model_args({}, model_args);
    options.max_sequences = 1;
    options.max_sequence_tokens = context;
    kestrel::Session session(model, options);
    kestrel::Decoder decoder(session);
    const int vocab = model->config().vocab_size;
    const int first = context / 2;
    double total = 0.0;
    long count = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int c = 0; c < chunks; ++c) {
      std::vector<int32_t> ids(tokens.begin() + static_cast<long>(c) * context,
                               tokens.begin() + static_cast<long>(c + 1) * context);
      const std::vector<float> logits = decoder.score(ids);
      // The logits at position i predict token i + 1.
      for (int i = first - 1; i < context - 1; ++i, ++count)
        total += nll(&logits[static_cast<size_t>(i) * vocab], vocab, ids[i + 1]);
      fmt::print("chunk {}/{}: running perplexity {:.4f}\n", c + 1, chunks, std::exp(total / count));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    fmt::print("perplexity {:.4f} over {} scored tokens ({} chunks of {}; {} tokens in the text; quant {}) in {:.1f} s\n",
               std::exp(total / count), count, chunks, context, tokens.size(), model_args.quant, seconds);
  } catch (const kestrel::Error& e) {
    std::cerr << "kestrel-perplexity: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
