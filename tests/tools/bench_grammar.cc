// kestrel_bench_grammar: what a grammar mask costs in a decode step (docs/PERFORMANCE.md,
// "Constrained decoding"; not part of ctest).
//   kestrel_bench_grammar MODEL [--tokens N] [--runs R] [--threads T]
// At batch 1, greedy, the same chat prompt is decoded R times without and R times with a
// JSON-schema constraint (the best run of each is kept), and the decode step time (decode
// seconds / (tokens - 1)) is printed for both. Then the constrained run's tokens are
// replayed against the model's logits (teacher forcing through Decoder::score) to time the
// grammar's own work at every step exactly as the decoder does it: the check of the
// sampler's token, and, where the grammar refused it, the full mask (vocabulary-trie walk)
// and the masked draw (the fastest of R replays). Its share of the constrained step is the
// figure the issue bounds (at most 10%). Last, the worst single mask: a state inside a JSON string, where almost
// every token is allowed and the trie walk visits most of the vocabulary.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include <kestrel/kestrel.h>

#include "decoding/constraint.h"
#include "decoding/grammar.h"
#include "decoding/json_schema.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

const char* kSchema = R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 32},
    "age": {"type": "integer"},
    "email": {"type": "string", "format": "uuid"},
    "languages": {"type": "array", "items": {"enum": ["en", "fr", "de", "es"]}, "maxItems": 4},
    "active": {"type": "boolean"}
  },
  "required": ["name", "age", "languages", "active"]
})";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [--tokens N] [--runs R] [--threads T]\n", argv[0]);
    return 2;
  }
  int tokens = 64, runs = 3, threads = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--tokens") tokens = value;
    else if (flag == "--runs") runs = value;
    else if (flag == "--threads") threads = value;
    else {
      std::fprintf(stderr, "unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  using namespace kestrel;
  try {
    ModelOptions mo;
    mo.num_threads = threads;
    auto model = Model::load(argv[1], mo);
    Session session(model, {.max_sequence_tokens = 512});
    Decoder decoder(session);
    const std::vector<ChatMessage> messages = {
        {"user", "Write a JSON object for a user named Ada, aged 36, who speaks English and French."}};
    GenerationRequest request;
    request.prompt_ids = encode_chat(*model, apply_chat_template(*model, messages));
    request.stop.max_new_tokens = tokens;
    request.stop.stop_at_eos = false;  // the same number of steps with and without the grammar

    auto best_step = [&](const GenerationRequest& r, GenerationResult& kept) {
      double best = 1e30;
      for (int i = 0; i < runs; ++i) {
        GenerationResult result = decoder.generate(r);
        if (result.tokens.size() < 2) continue;
        const double step = result.decode_seconds / static_cast<double>(result.tokens.size() - 1);
        if (step < best) {
          best = step;
          kept = std::move(result);
        }
      }
      return best;
    };
    GenerationResult plain, constrained;
    const double plain_step = best_step(request, plain);
    GenerationRequest json = request;
    json.constraint.json_schema = kSchema;
    const double json_step = best_step(json, constrained);

    // Replay the constrained run's steps: the sampler's token (greedy: the argmax of the
    // logits) checked, and the mask + draw where refused.
    std::vector<int32_t> ids = json.prompt_ids;
    ids.insert(ids.end(), constrained.tokens.begin(), constrained.tokens.end());
    const std::vector<float> logits = decoder.score(ids);
    const size_t V = static_cast<size_t>(model->config().vocab_size);
    const size_t P = json.prompt_ids.size();
    // The replay runs `runs` times; the fastest of each figure is kept (the machine may be shared).
    double check_seconds = 1e30, mask_seconds = 1e30, slowest_mask = 1e30;
    int masked_steps = 0;
    SamplingRow row;  // greedy
    for (int rep = 0; rep < runs; ++rep) {
      ConstraintState state(compile_constraint(json, 0, model->tokenizer()), model->tokenizer());
      double check = 0, mask = 0, slowest = 0;
      masked_steps = 0;
      for (size_t j = 0; j < constrained.tokens.size(); ++j) {
        const float* l = logits.data() + (P - 1 + j) * V;
        const int32_t sampled = static_cast<int32_t>(std::max_element(l, l + V) - l);
        auto t0 = Clock::now();
        const bool allowed = state.allows(sampled);
        check += since(t0);
        if (!allowed) {
          t0 = Clock::now();
          const auto chosen = state.choose(sampled, std::span<const float>(l, V), row);
          const double took = since(t0);
          mask += took;
          slowest = std::max(slowest, took);
          ++masked_steps;
          if (rep == 0 && (!chosen || *chosen != constrained.tokens[j]))
            std::fprintf(stderr, "note: the replay chose another token at step %zu (the logits of a batched score "
                                 "step differ in rounding)\n", j);
        }
        state.accept(constrained.tokens[j]);
        if (state.must_end()) break;
      }
      check_seconds = std::min(check_seconds, check);
      mask_seconds = std::min(mask_seconds, mask);
      slowest_mask = std::min(slowest_mask, slowest);
    }
    const double n = static_cast<double>(constrained.tokens.size());
    const double grammar_per_step = (check_seconds + mask_seconds) / n;

    // The worst single mask: inside a JSON string nearly every token is allowed.
    grammar::Matcher inside(std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(json_schema_to_grammar(kSchema))));
    inside.accept("{\"name\": \"Ad");
    const auto trie = grammar::vocabulary_trie(model->tokenizer());
    std::vector<int32_t> allowed;
    double worst_mask = 1e30;  // the fastest of 5
    for (int i = 0; i < 5; ++i) {
      const auto t0 = Clock::now();
      trie->allowed_tokens(inside, allowed);
      worst_mask = std::min(worst_mask, since(t0));
    }

    std::printf("model: %s, batch 1, greedy, %d new tokens, best of %d runs\n", argv[1], tokens, runs);
    std::printf("constrained output (%zu tokens): %s\n\n", constrained.tokens.size(), constrained.text.c_str());
    std::printf("| | decode step (ms) |\n|---|---:|\n");
    std::printf("| unconstrained | %.2f |\n", plain_step * 1e3);
    std::printf("| JSON schema | %.2f |\n\n", json_step * 1e3);
    std::printf("| grammar work per constrained step | ms | share of the step |\n|---|---:|---:|\n");
    std::printf("| token check (every step) | %.4f | %.2f%% |\n", check_seconds / n * 1e3, 100.0 * check_seconds / n / json_step);
    std::printf("| mask + masked draw (%d of %zu steps) | %.4f | %.2f%% |\n", masked_steps, constrained.tokens.size(),
                mask_seconds / n * 1e3, 100.0 * mask_seconds / n / json_step);
    std::printf("| total | %.4f | %.2f%% |\n\n", grammar_per_step * 1e3, 100.0 * grammar_per_step / json_step);
    std::printf("slowest mask of the run: %.3f ms\n", slowest_mask * 1e3);
    std::printf("worst single mask (inside a JSON string, %zu of %zu tokens allowed, trie of %zu nodes): %.2f ms\n",
                allowed.size(), V, trie->nodes(), worst_mask * 1e3);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kestrel_bench_grammar: %s\n", e.what());
    return 1;
  }
}
