// kestrel-score: logits, tokens and greedy continuations as files, for comparisons with
// other runtimes (scripts/compare-llamacpp.py depends on exactly this contract).
//
//   kestrel-score --model M --tokens-json IN.json --out OUT.bin
//       IN.json: a JSON list of token-id lists. OUT.bin: for each list, the logits at every
//       position as float32 [n, vocab], lists concatenated, raw little-endian.
//   kestrel-score --model M --tokenize-json PROMPTS.json --out TOKENS.json
//       PROMPTS.json: a JSON list of strings. TOKENS.json: a JSON list of id lists
//       (Tokenizer::encode of each string: special tokens parsed, BOS as the model adds it).
//   kestrel-score --model M --tokens-json IN.json --greedy N --out OUT.json
//       OUT.json: for each list, the N ids greedy decoding generates after it (not
//       stopping at EOS), as a JSON list of id lists.
// Errors exit non-zero with the message.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli_options.h"

namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& what) { throw kestrel::Error(kestrel::ErrorCategory::invalid_argument, what); }

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw kestrel::Error(kestrel::ErrorCategory::io, path + ": cannot open");
  json doc = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) throw kestrel::Error(kestrel::ErrorCategory::format, path + ": malformed JSON");
  if (!doc.is_array()) throw kestrel::Error(kestrel::ErrorCategory::format, path + ": expected a JSON list");
  return doc;
}

std::vector<std::vector<int32_t>> read_token_lists(const std::string& path) {
  std::vector<std::vector<int32_t>> lists;
  for (const auto& item : read_json(path)) {
    if (!item.is_array())
      throw kestrel::Error(kestrel::ErrorCategory::format,
                           path + ": item " + std::to_string(lists.size()) + " is not a list of token ids");
    std::vector<int32_t> ids;
    for (const auto& id : item) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
        throw kestrel::Error(kestrel::ErrorCategory::format,
                             path + ": item " + std::to_string(lists.size()) + " holds " + id.dump() +
                                 ", not a token id");
      ids.push_back(id.get<int32_t>());
    }
    if (ids.empty())
      throw kestrel::Error(kestrel::ErrorCategory::format, path + ": item " + std::to_string(lists.size()) + " is empty");
    lists.push_back(std::move(ids));
  }
  return lists;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw kestrel::Error(kestrel::ErrorCategory::io, path + ": cannot write");
}

// The session: long enough for the longest list plus what is generated after it.
kestrel::SessionOptions session_for(const kestrel::Model& model, const kestrel_examples::ModelArgs& args,
                                    size_t longest, int sequences) {
  kestrel::SessionOptions options = kestrel_examples::with_model_args({}, args);
  options.max_sequences = sequences;
  options.max_sequence_tokens = args.max_sequence_tokens;
  if (options.max_sequence_tokens == 0)
    options.max_sequence_tokens =
        static_cast<int>(std::min<size_t>(longest, static_cast<size_t>(model.config().max_positions)));
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Logits, tokens and greedy continuations for comparisons", "kestrel-score"};
  kestrel_examples::ModelArgs model_args;
  std::string tokens_json, tokenize_json, out_path;
  int greedy = 0;
  kestrel_examples::add_model_options(app, model_args);
  auto* tokens_opt = app.add_option("--tokens-json", tokens_json, "JSON list of token-id lists");
  auto* tokenize_opt = app.add_option("--tokenize-json", tokenize_json, "JSON list of strings to tokenize");
  tokens_opt->excludes(tokenize_opt);
  app.add_option("--greedy", greedy, "Generate N greedy tokens per list instead of scoring")
      ->check(CLI::PositiveNumber)
      ->needs(tokens_opt);
  app.add_option("--out", out_path, "Output file")->required();
  CLI11_PARSE(app, argc, argv);

  try {
    if (tokens_json.empty() && tokenize_json.empty()) fail("one of --tokens-json and --tokenize-json is needed");
    auto model = kestrel_examples::load_model(model_args);

    if (!tokenize_json.empty()) {
      json out = json::array();
      for (const auto& text : read_json(tokenize_json)) {
        if (!text.is_string()) fail(tokenize_json + ": item " + std::to_string(out.size()) + " is not a string");
        out.push_back(model->tokenizer().encode(text.get<std::string>()));
      }
      write_text(out_path, out.dump() + "\n");
      return 0;
    }

    const auto lists = read_token_lists(tokens_json);
    size_t longest = 0;
    for (const auto& ids : lists) longest = std::max(longest, ids.size());

    if (greedy > 0) {
      const int sequences = static_cast<int>(std::clamp<size_t>(lists.size(), 1, 8));
      kestrel::Session session(model, session_for(*model, model_args, longest + greedy, sequences));
      kestrel::Decoder decoder(session);
      std::vector<kestrel::GenerationRequest> requests(lists.size());
      for (size_t i = 0; i < lists.size(); ++i) {
        requests[i].prompt_ids = lists[i];
        requests[i].stop.max_new_tokens = greedy;
        requests[i].stop.stop_at_eos = false;
      }
      json out = json::array();
      for (const auto& result : decoder.generate(requests)) {
        if (result.finish == kestrel::FinishReason::error)
          throw kestrel::Error(kestrel::ErrorCategory::limit, result.error);
        out.push_back(result.tokens);
      }
      write_text(out_path, out.dump() + "\n");
      return 0;
    }

    kestrel::Session session(model, session_for(*model, model_args, longest, 1));
    kestrel::Decoder decoder(session);
    std::ofstream out(out_path, std::ios::binary);
    if (!out) throw kestrel::Error(kestrel::ErrorCategory::io, out_path + ": cannot write");
    for (const auto& ids : lists) {
      const std::vector<float> logits = decoder.score(ids);  // little-endian hosts only (x86-64, aarch64)
      out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
    }
    if (!out) throw kestrel::Error(kestrel::ErrorCategory::io, out_path + ": cannot write");
    return 0;
  } catch (const kestrel::Error& e) {
    std::cerr << "kestrel-score: " << e.what() << std::endl;
    return 1;
  }
}
