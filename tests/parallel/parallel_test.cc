// Tensor and pipeline parallel runs, on the CPU under mpirun (tests/CMakeLists.txt starts
// this binary as 2, 3 and 4 ranks with --tp / --pp). Every rank runs every test; a test
// fails the job if it fails on any rank.
//
// Each model is run split (--tp x --pp over the MPI job) and whole on this rank alone
// (ParallelOptions 1 x 1 never touches MPI), on the same inputs: greedy tokens must be
// identical, to each other and to Hugging Face transformers' (the fixtures' reference),
// and logits must agree within fp32 reduction-order tolerance; GGUF files whose embedding
// table stays in its blocks (BlockTables) agree with one process's the same way. The error tests check that
// what cannot run says so on every rank instead of hanging.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <kestrel/kestrel.h>

#include <nlohmann/json.hpp>

#include "loaders/gguf_quant.h"
#include "loaders/safetensors.h"
#include "models/model_state.h"
#include "models/quantize.h"
#include "reference_fixture.h"
#include "test_support.h"
#include "tools/held_weights.h"

namespace kestrel {
namespace {

using testing::fixture_dir;
using testing::load_reference;
using testing::ReferencePrompt;

// Summing partial products in another order moves fp32 logits by a few ulps of their
// magnitude (up to 3.3e-5 seen here): held to the 1e-4 (max abs) of HF's fp32 reference.
constexpr float kSplitVsWholeTolerance = 1e-4f;
constexpr float kHfTolerance = 1e-4f;

// A mixture of experts' tolerance against HF, as tests/models/moe_test.cc holds one process
// to: kHfTolerance, or 2e-5 of the largest reference logit where that is more (the tiny
// MoE fixtures' logits reach 18, and the routing's weighted sums add rounding: one process
// measured 1.5e-4 on tiny-qwen2-moe-mixed, 8e-6 of its largest logit).
float hf_tolerance(const ModelConfig& c, const std::vector<float>& reference) {
  if (c.num_experts == 0) return kHfTolerance;
  float m = 0.0f;
  for (float v : reference) m = std::max(m, std::fabs(v));
  return std::max(kHfTolerance, 2e-5f * m);
}

ParallelOptions g_split;  // from --tp / --pp
Device g_device;          // from --device (cuda runs in f32 on one GPU per rank)
int g_fail_rank = -1;     // from --fail-rank: the rank FailingRank makes fail
int g_die_rank = -1;      // from --die-rank: the rank DyingRank kills

struct ModelCase {
  const char* name;
  const char* model;
  const char* reference;
};
void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.model; }

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float d = 0.0f;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

class Split : public ::testing::TestWithParam<ModelCase> {
 protected:
  void SetUp() override {
    ModelOptions options;
    options.num_threads = 1;  // ranks share the cores
    // Weights in f32 on every rank: a rank holding a slice of a GGUF tensor cannot keep its
    // blocks, and these tests compare logits with the whole model's and HF's within 1e-4.
    options.quantization = Quantization::none;
    options.device = g_device;
    if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
    whole_ = Model::load(fixture_dir() / GetParam().model, options);
    if (g_split.pipeline_parallel > whole_->config().num_layers)
      GTEST_SKIP() << GetParam().model << " has " << whole_->config().num_layers << " layers, fewer than --pp "
                   << g_split.pipeline_parallel;
    options.parallel = g_split;
    options.parallel.timeout_seconds = 120;
    split_ = Model::load(fixture_dir() / GetParam().model, options);
    prompts_ = load_reference(fixture_dir() / GetParam().reference, whole_->config().vocab_size);
    ASSERT_GE(prompts_.size(), 4u);
  }

  static GenerationRequest greedy(const ReferencePrompt& p) { return testing::greedy_request(p); }

  std::shared_ptr<const Model> whole_, split_;
  std::vector<ReferencePrompt> prompts_;
};

TEST_P(Split, RankHoldsItsSlice) {
  const ParallelInfo& p = split_->parallel();
  const ModelConfig& c = split_->config();
  EXPECT_EQ(p.tensor_parallel, g_split.tensor_parallel);
  EXPECT_EQ(p.pipeline_parallel, g_split.pipeline_parallel);
  EXPECT_EQ(p.rank, launcher_rank());
  EXPECT_EQ(p.num_heads * p.tensor_parallel, c.num_heads);
  EXPECT_EQ(p.ffn_size * p.tensor_parallel, c.ffn_size);
  // Mixtures of experts: the rank's columns of every expert and of the shared expert.
  EXPECT_EQ(p.expert_ffn_size * p.tensor_parallel, c.expert_ffn_size);
  EXPECT_EQ(p.shared_expert_ffn_size * p.tensor_parallel, c.shared_expert_ffn_size);
  for (const LayerWeights& layer : split_->state().weights.layers) {
    if (layer.moe.empty()) continue;
    for (int e = 0; e < c.num_experts; ++e) {
      EXPECT_EQ(layer.moe.expert_down.at(e).dense.dim(1), p.expert_ffn_size);
      EXPECT_EQ(layer.moe.expert_up.at(e).dense.dim(0), 2 * p.expert_ffn_size);
    }
    EXPECT_EQ(layer.moe.router.dense.dim(0), c.num_experts);  // replicated
    if (c.shared_expert_ffn_size > 0) {
      EXPECT_EQ(layer.moe.shared_down.dense.dim(1), p.shared_expert_ffn_size);
    }
  }
  // kestrel-size's figure for this rank (its file's tensor table, the loader's rules).
  const sizing::FileWeights file(fixture_dir() / GetParam().model);
  const Shard shard = make_shard(c, p.tensor_parallel, p.pipeline_parallel, p.tensor_rank, p.stage,
                                 GetParam().model, file.ffn_alignment(Quantization::none, 0));
  bool tied = false;
  EXPECT_EQ(file.held(shard, Quantization::none, 0, split_->dtype(), &tied).total(), split_->weight_bytes());
  // ceil(V / tp) rows a rank, rounded up to a row group of 8; the last rank's are fewer.
  const int vocab_rows = ((c.vocab_size + p.tensor_parallel - 1) / p.tensor_parallel + 7) / 8 * 8;
  EXPECT_EQ(p.vocab_size, std::min(vocab_rows, c.vocab_size - p.tensor_rank * vocab_rows));
  EXPECT_GE(p.num_layers, c.num_layers / p.pipeline_parallel);
  EXPECT_LE(p.num_layers, (c.num_layers + p.pipeline_parallel - 1) / p.pipeline_parallel);
  // Each rank holds less than the whole model, and the KV cache only of its layers and heads.
  EXPECT_LT(split_->weight_bytes(), whole_->weight_bytes());
  Session whole(whole_, testing::f32_cache({.max_sequences = 2}));
  Session split(split_, testing::f32_cache({.max_sequences = 2}));
  EXPECT_EQ(split.memory().kv_cache_bytes * c.num_layers * c.num_kv_heads,
            whole.memory().kv_cache_bytes * p.num_layers * p.num_kv_heads);
}

TEST_P(Split, LogitsAtEveryPositionMatchWholeModelAndHf) {
  Session whole(whole_, testing::f32_cache()), split(split_, testing::f32_cache());
  Decoder whole_decoder(whole), split_decoder(split);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    std::vector<float> a = whole_decoder.score(prompts_[i].ids);
    std::vector<float> b = split_decoder.score(prompts_[i].ids);
    EXPECT_LE(max_abs_diff(a, b), kSplitVsWholeTolerance) << "prompt " << i;
    EXPECT_LE(max_abs_diff(b, prompts_[i].logits), hf_tolerance(split_->config(), prompts_[i].logits))
        << "prompt " << i;
  }
  EXPECT_EQ(split.free_kv_blocks(), split.options().kv_blocks);
}

TEST_P(Split, GreedyTokensMatchHf) {
  Session session(split_, testing::f32_cache({.max_sequences = 1}));
  Decoder decoder(session);
  for (const auto& p : prompts_) EXPECT_EQ(decoder.generate(greedy(p)).tokens, p.greedy) << p.text;
}

// Two slots (requests join as others finish), prompts in chunks of 5 tokens, blocks of 4
// positions: steps with one to several sequences, hence one to several micro-batches.
TEST_P(Split, BatchedChunkedJoiningRequestsMatchHf) {
  Session session(split_, testing::f32_cache({.max_sequences = 3, .max_step_tokens = 5, .kv_block_size = 4}));
  Decoder decoder(session);
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts_) requests.push_back(greedy(p));
  requests[1].stop.max_new_tokens = 7;
  auto results = decoder.generate(requests);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    std::vector<int32_t> want = prompts_[i].greedy;
    want.resize(requests[i].stop.max_new_tokens);
    EXPECT_EQ(results[i].tokens, want) << i;
  }
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks);
}

TEST_P(Split, SampledTokensMatchWholeModel) {
  Session whole(whole_, testing::f32_cache({.max_sequences = 4})), split(split_, testing::f32_cache({.max_sequences = 4}));
  Decoder whole_decoder(whole), split_decoder(split);
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < prompts_.size(); ++i) {
    GenerationRequest r = greedy(prompts_[i]);
    r.sampling = {.temperature = 0.9f, .top_k = 50, .top_p = 0.95f, .repetition_penalty = 1.1f,
                  .seed = 1234 + i};
    requests.push_back(r);
  }
  auto a = whole_decoder.generate(requests);
  auto b = split_decoder.generate(requests);
  for (size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(a[i].tokens, b[i].tokens) << i;
}

// Several samples of one prompt (forked sequences sharing KV blocks, copy-on-write on each
// rank's layers; the parent's logits row copied on the last stage): the whole model's tokens.
TEST_P(Split, SeveralSamplesOfOnePromptMatchWholeModel) {
  const SessionOptions options{.max_sequences = 4, .kv_block_size = 4};
  Session whole(whole_, testing::f32_cache(options)), split(split_, testing::f32_cache(options));
  Decoder whole_decoder(whole), split_decoder(split);
  GenerationRequest r = greedy(prompts_[2]);
  r.sampling = {.temperature = 0.9f, .top_k = 50, .seed = 99};
  r.num_return_sequences = 3;
  const auto a = whole_decoder.generate(r), b = split_decoder.generate(r);
  ASSERT_EQ(b.sequences.size(), 3u);
  for (size_t j = 0; j < 3; ++j) EXPECT_EQ(a.sequences[j].tokens, b.sequences[j].tokens) << j;
  EXPECT_EQ(split.free_kv_blocks(), split.options().kv_blocks);
}

// The callback asks to cancel on rank 0 only: every rank must stop that request together.
TEST_P(Split, CancellingOnRankZeroStopsEveryRank) {
  Session session(split_, testing::f32_cache({.max_sequences = 2}));
  Decoder decoder(session);
  std::vector<GenerationRequest> requests{greedy(prompts_[0]), greedy(prompts_[1])};
  int seen = 0;
  auto results = decoder.generate(requests, [&](const StreamEvent& e) {
    if (e.request == 0) ++seen;
    return !(e.request == 0 && seen == 3 && launcher_rank() == 0);
  });
  EXPECT_EQ(results[0].finish, FinishReason::cancelled);
  EXPECT_EQ(results[0].tokens.size(), 3u);
  EXPECT_EQ(results[1].tokens, prompts_[1].greedy);
}

// Every rank must end the same request for lack of KV blocks; each rank's results equal
// the whole model's with the same limits, so they equal each other's.
TEST_P(Split, ExhaustedKvCacheEndsTheSameRequestOnEveryRank) {
  const SessionOptions limits{.max_sequences = 2, .kv_block_size = 4, .kv_blocks = 6};
  Session whole(whole_, testing::f32_cache(limits)), split(split_, testing::f32_cache(limits));
  Decoder whole_decoder(whole), split_decoder(split);
  std::vector<GenerationRequest> requests{greedy(prompts_[0]), greedy(prompts_[1])};
  requests[0].stop.max_new_tokens = 40;
  auto a = whole_decoder.generate(requests);
  auto b = split_decoder.generate(requests);
  EXPECT_TRUE(b[0].finish == FinishReason::error || b[1].finish == FinishReason::error);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(a[i].finish, b[i].finish) << i;
    EXPECT_EQ(a[i].tokens, b[i].tokens) << i;
  }
  EXPECT_EQ(split.free_kv_blocks(), split.options().kv_blocks);
}

std::string case_name(const ::testing::TestParamInfo<ModelCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(
    Models, Split,
    ::testing::Values(ModelCase{"tiny_gpt2", "tiny-gpt2", "tiny-gpt2"}, ModelCase{"tiny_llama", "tiny-llama", "tiny-llama"},
                      ModelCase{"tiny_llama_gguf", "tiny-llama.gguf", "tiny-llama-gguf"},
                      ModelCase{"tiny_gpt2_gguf", "tiny-gpt2.gguf", "tiny-gpt2-f16"}),
    case_name);

// The newer families (tests/fixtures/make_tiny_families.py, make_tiny_phi3.py; 2 layers,
// so not under --pp 3): Qwen2's q, k, v biases sliced with their heads; GPT-NeoX's
// per-head interleaved QKV, partial rotary and parallel residual (from safetensors and
// GGUF); GPT-J's shared-norm parallel block and vocabulary-split LM-head bias; Mistral's
// one KV head (replicated on every rank) and sliding window; Llama 3.1's rope scaling with
// attention / MLP biases; YaRN (Phi-3: Phi3Split below); Granite's multipliers, the
// residual one on row-parallel outputs after their all-reduce, with their biases; the
// mixtures of experts (Mixtral, Qwen2-MoE with its shared expert, dense and sparse layers
// mixed, Qwen3-MoE, GraniteMoE; safetensors and GGUF), every rank holding its columns of
// every expert and the block's one all-reduce summing the partial outputs.
INSTANTIATE_TEST_SUITE_P(
    Families, Split,
    ::testing::Values(ModelCase{"tiny_qwen2", "tiny-qwen2", "tiny-qwen2"},
                      ModelCase{"tiny_qwen2_gguf", "tiny-qwen2.gguf", "tiny-qwen2"},
                      ModelCase{"tiny_gpt_neox", "tiny-gpt-neox", "tiny-gpt-neox"},
                      ModelCase{"tiny_gpt_neox_gguf", "tiny-gpt-neox.gguf", "tiny-gpt-neox"},
                      ModelCase{"tiny_gptj", "tiny-gptj", "tiny-gptj"},
                      ModelCase{"tiny_mistral", "tiny-mistral", "tiny-mistral"},
                      ModelCase{"tiny_llama3", "tiny-llama3", "tiny-llama3"},
                      ModelCase{"tiny_llama_yarn", "tiny-llama-yarn", "tiny-llama-yarn"},
                      ModelCase{"tiny_qwen2_yarn", "tiny-qwen2-yarn", "tiny-qwen2-yarn"},
                      ModelCase{"tiny_granite", "tiny-granite", "tiny-granite"},
                      ModelCase{"tiny_granite_gguf", "tiny-granite.gguf", "tiny-granite"},
                      ModelCase{"tiny_mixtral", "tiny-mixtral", "tiny-mixtral"},
                      ModelCase{"tiny_mixtral_gguf", "tiny-mixtral.gguf", "tiny-mixtral"},
                      ModelCase{"tiny_qwen2_moe", "tiny-qwen2-moe", "tiny-qwen2-moe"},
                      ModelCase{"tiny_qwen2_moe_gguf", "tiny-qwen2-moe.gguf", "tiny-qwen2-moe"},
                      ModelCase{"tiny_qwen2_moe_mixed", "tiny-qwen2-moe-mixed", "tiny-qwen2-moe-mixed"},
                      ModelCase{"tiny_qwen3_moe", "tiny-qwen3-moe", "tiny-qwen3-moe"},
                      ModelCase{"tiny_qwen3_moe_gguf", "tiny-qwen3-moe.gguf", "tiny-qwen3-moe"},
                      ModelCase{"tiny_granitemoe", "tiny-granitemoe", "tiny-granitemoe"},
                      ModelCase{"tiny_granitemoe_gguf", "tiny-granitemoe.gguf", "tiny-granitemoe"}),
    case_name);

// Phi-3: fused QKV and [gate | up] sliced by heads and FFN columns, LongRoPE's table chosen
// per session on every rank. The reference holds for prompts past the original 16
// positions in a default (64-position) session (tests/models/rope_context_test.cc); every
// prompt matches the whole model.
TEST(Phi3Split, LogitsMatchWholeModelAndHfAndGreedyTokensHf) {
  ModelOptions options;
  options.num_threads = 1;
  options.quantization = Quantization::none;
  options.device = g_device;
  if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
  for (const char* file : {"tiny-phi3", "tiny-phi3.gguf"}) {
    auto whole_model = Model::load(fixture_dir() / file, options);
    if (g_split.pipeline_parallel > whole_model->config().num_layers) GTEST_SKIP() << "2 layers";
    options.parallel = g_split;
    options.parallel.timeout_seconds = 120;
    auto split_model = Model::load(fixture_dir() / file, options);
    options.parallel = {};
    const auto prompts = load_reference(fixture_dir() / "tiny-phi3", whole_model->config().vocab_size);
    Session whole(whole_model, testing::f32_cache()), split(split_model, testing::f32_cache({.max_sequences = 1}));
    Decoder whole_decoder(whole), split_decoder(split);
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::vector<float> a = whole_decoder.score(prompts[i].ids);
      std::vector<float> b = split_decoder.score(prompts[i].ids);
      EXPECT_LE(max_abs_diff(a, b), kSplitVsWholeTolerance) << file << " prompt " << i;
      if (prompts[i].ids.size() <= 16) continue;
      EXPECT_LE(max_abs_diff(b, prompts[i].logits), kHfTolerance) << file << " prompt " << i;
      EXPECT_EQ(split_decoder.generate(testing::greedy_request(prompts[i])).tokens, prompts[i].greedy)
          << file << " prompt " << i;
    }
  }
}

// gpt-oss (tests/fixtures/make_tiny_gpt_oss.py): by pipeline stages, each stage's layers
// with their own windows and sinks, the logits follow the whole model and transformers and
// the greedy tokens are transformers'; under tp > 1 every rank refuses the experts' biases
// by name (each rank's MoE output is a partial sum, and a down bias would be added tp times).
TEST(GptOssSplit, StagesMatchWholeModelAndHfAndTensorParallelIsRefused) {
  ModelOptions options;
  options.num_threads = 1;
  options.quantization = Quantization::none;
  options.device = g_device;
  if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
  const auto path = fixture_dir() / "tiny-gpt-oss";
  auto whole_model = Model::load(path, options);
  if (g_split.pipeline_parallel > whole_model->config().num_layers) GTEST_SKIP() << "2 layers";
  options.parallel = g_split;
  options.parallel.timeout_seconds = 120;
  if (g_split.tensor_parallel > 1) {
    try {
      (void)Model::load(path, options);
      ADD_FAILURE() << "tp " << g_split.tensor_parallel << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::unsupported) << e.what();
      EXPECT_NE(std::string(e.what()).find("biases"), std::string::npos) << e.what();
    }
    return;
  }
  auto split_model = Model::load(path, options);
  options.parallel = {};
  const auto prompts = load_reference(path, whole_model->config().vocab_size);
  Session whole(whole_model, testing::f32_cache()), split(split_model, testing::f32_cache({.max_sequences = 1}));
  Decoder whole_decoder(whole), split_decoder(split);
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<float> a = whole_decoder.score(prompts[i].ids);
    std::vector<float> b = split_decoder.score(prompts[i].ids);
    EXPECT_LE(max_abs_diff(a, b), kSplitVsWholeTolerance) << "prompt " << i;
    // As moe_test.cc allows a mixture of experts: 2e-5 of the largest logit where that is more.
    float largest = 0.0f;
    for (float v : prompts[i].logits) largest = std::max(largest, std::fabs(v));
    EXPECT_LE(max_abs_diff(b, prompts[i].logits), std::max(kHfTolerance, 2e-5f * largest)) << "prompt " << i;
    EXPECT_EQ(split_decoder.generate(testing::greedy_request(prompts[i])).tokens, prompts[i].greedy) << "prompt " << i;
  }
}

// --- a vocabulary that tp does not divide ---------------------------------------------

// tiny-llama with 1002 vocabulary rows (two random rows appended to the embedding and the
// LM head, which the tokenizer never produces but greedy decoding may pick): split over 4
// ranks, each holds 251 LM-head rows and the last one 2 rows of padding.
std::filesystem::path padded_vocab_llama() {
  const auto src = fixture_dir() / "tiny-llama";
  const auto dir = testing::temp_dir("padded-vocab-llama-rank" + std::to_string(launcher_rank()));
  for (const char* f : {"tokenizer.json", "vocab.json", "merges.txt"})
    std::filesystem::copy_file(src / f, dir / f, std::filesystem::copy_options::overwrite_existing);
  auto config = nlohmann::json::parse(testing::read_file(src / "config.json"));
  config["vocab_size"] = 1002;
  testing::write_file(dir / "config.json", config.dump());

  SafetensorsFile model(src / "model.safetensors");
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  uint64_t seed = 11;
  for (const auto& [name, t] : model.tensors()) {
    std::vector<int64_t> shape = t.shape;
    std::string bytes(static_cast<const char*>(t.data), t.bytes);
    if (name == "model.embed_tokens.weight" || name == "lm_head.weight") {
      std::vector<float> extra = testing::random_floats(2 * static_cast<size_t>(shape[1]), seed++, -0.1f, 0.1f);
      bytes.append(reinterpret_cast<const char*>(extra.data()), extra.size() * sizeof(float));
      shape[0] += 2;
    }
    header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data += bytes;
  }
  const std::string json = header.dump();
  const uint64_t length = json.size();
  testing::write_file(dir / "model.safetensors",
                      std::string(reinterpret_cast<const char*>(&length), 8) + json + data);
  return dir;
}

TEST(PaddedVocabulary, SplitMatchesWholeModel) {
  if (g_split.tensor_parallel != 4) GTEST_SKIP() << "runs with --tp 4 (1002 = 3 x 256 + 234)";
  const auto path = padded_vocab_llama();
  ModelOptions options;
  options.num_threads = 1;
  options.quantization = Quantization::none;
  auto whole = Model::load(path, options);
  options.parallel = g_split;
  auto split = Model::load(path, options);
  // ceil(1002 / 4) = 251 rows rounded up to a row group of 8: the last rank 22 padding rows.
  EXPECT_EQ(split->parallel().vocab_size, launcher_rank() == 3 ? 234 : 256);
  Session whole_session(whole, testing::f32_cache({.max_sequences = 2})), split_session(split, testing::f32_cache({.max_sequences = 2}));
  Decoder whole_decoder(whole_session), split_decoder(split_session);
  std::vector<int32_t> ids;
  for (float f : testing::random_floats(12, 5, 0.0f, 1000.0f)) ids.push_back(static_cast<int32_t>(f));
  EXPECT_LE(max_abs_diff(whole_decoder.score(ids), split_decoder.score(ids)), kSplitVsWholeTolerance);
  GenerationRequest request;
  request.prompt_ids = ids;
  request.stop = {.max_new_tokens = 16, .stop_at_eos = false};
  request.sampling = {.temperature = 1.5f, .seed = 9};  // reaches the extra rows too
  std::vector<GenerationRequest> requests{request, request};
  requests[1].sampling = {};
  auto a = whole_decoder.generate(requests), b = split_decoder.generate(requests);
  for (size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(a[i].tokens, b[i].tokens) << i;
}

// --- embedding tables kept in the file's blocks ----------------------------------------

// GGUF files whose token embedding is stored in blocks (tests/fixtures/make_embedding_blocks.py):
// tied to its Q8_0 head (qwen2-q8_0; qwen2-6heads-q8_0, which tp = 2 and 3 split: at pp = 1
// the head is a view of the rank's whole table, padding rows included), untied from one
// (qwen2-untied-q8_0), or the only quantized tensor (gpt2-table-q8_0 with learned positions,
// gemma2-table-q4_0 with the scaled embedding). Split and whole run the file's blocks
// (--quant auto).
class BlockTables : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    path_ = fixture_dir() / GetParam();
    whole_ = load(Quantization::automatic, false);
    const ModelConfig& c = whole_->config();
    const int tp = g_split.tensor_parallel;
    if (g_split.pipeline_parallel > c.num_layers || c.num_heads % tp != 0 ||
        (c.num_kv_heads % tp != 0 && tp % c.num_kv_heads != 0))
      GTEST_SKIP() << GetParam() << " does not split " << tp << " x " << g_split.pipeline_parallel;
    split_ = load(Quantization::automatic, true);
  }

  std::shared_ptr<const Model> load(Quantization mode, bool split) const {
    ModelOptions options;
    options.num_threads = 1;
    options.quantization = mode;
    options.device = g_device;
    if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
    if (split) {
      options.parallel = g_split;
      options.parallel.timeout_seconds = 120;
    }
    return Model::load(path_, options);
  }

  // Token ids every rank draws alike (a fixed seed: the ranks must feed the same prompt).
  std::vector<int32_t> prompt(size_t length, uint64_t seed) const {
    std::vector<int32_t> ids;
    for (float f : testing::random_floats(length, seed, 0.0f, static_cast<float>(whole_->config().vocab_size)))
      ids.push_back(std::min(static_cast<int32_t>(f), whole_->config().vocab_size - 1));
    return ids;
  }

  // The bytes of the table in the file's blocks (its kept_layout).
  size_t table_block_bytes() const {
    const sizing::FileWeights file(path_);
    const SourceTensor* t = file.source().find("token_embd.weight");
    const KeptLayout layout = *kept_layout(*t->block_type);
    return quantized_weight_bytes(layout.format, whole_->config().vocab_size, whole_->config().hidden_size,
                                  layout.group_size);
  }

  std::filesystem::path path_;
  std::shared_ptr<const Model> whole_, split_;
};

// Each rank's Model::weight_bytes() is kestrel-size's figure for it, whose table, on every
// rank of the first stage, is the whole table in the file's blocks (none elsewhere); a tied
// head at pp = 1 holds no bytes of its own (at tp > 1 the table holds its padding rows).
TEST_P(BlockTables, FirstStageHoldsTheWholeTableInBlocks) {
  const ParallelInfo& p = split_->parallel();
  const sizing::FileWeights file(path_);
  const Shard shard = make_shard(split_->config(), p.tensor_parallel, p.pipeline_parallel, p.tensor_rank, p.stage,
                                 path_.string(), file.ffn_alignment(Quantization::automatic, 0));
  bool tied = false;
  const sizing::WeightBytes held = file.held(shard, Quantization::automatic, 0, split_->dtype(), &tied);
  EXPECT_EQ(held.total(), split_->weight_bytes()) << split_->weight_formats();
  const ModelConfig& c = split_->config();
  const bool doubled = tied_head_doubles_as_embedding(file.architecture(), shard);
  const int64_t rows = doubled ? int64_t{shard.tp} * shard.vocab : c.vocab_size;
  EXPECT_EQ(held.token_embedding, p.stage == 0 ? table_block_bytes() / c.vocab_size * rows : 0u);
  if (doubled) {
    EXPECT_TRUE(tied);
    EXPECT_EQ(held.lm_head, 0u);
  }
}

// Logits agree with one process's as the float models' do (the all-reduce sums in another
// order), and greedy tokens are the same.
TEST_P(BlockTables, LogitsAndGreedyTokensMatchWholeModel) {
  const ModelConfig& c = whole_->config();
  const int64_t out_columns = int64_t{c.num_heads} * c.head_dim / g_split.tensor_parallel;
  if (std::string(GetParam()).find("-table-") == std::string::npos && out_columns % 32 != 0)
    GTEST_SKIP() << "the output projection's " << out_columns << " columns per rank cut its Q8_0 blocks: "
                 << "materialized, it computes otherwise than one process's blocks";
  Session whole(whole_, testing::f32_cache({.max_sequences = 1})), split(split_, testing::f32_cache({.max_sequences = 1}));
  Decoder whole_decoder(whole), split_decoder(split);
  for (uint64_t seed : {21u, 22u, 23u}) {
    const std::vector<int32_t> ids = prompt(6 + 5 * (seed - 21), seed);
    EXPECT_LE(max_abs_diff(whole_decoder.score(ids), split_decoder.score(ids)), kSplitVsWholeTolerance) << seed;
    GenerationRequest request;
    request.prompt_ids = ids;
    request.stop = {.max_new_tokens = 10, .stop_at_eos = false};
    EXPECT_EQ(whole_decoder.generate(request).tokens, split_decoder.generate(request).tokens) << seed;
  }
}

// Where the table is the only quantized tensor, the split model computes with it exactly what
// the same split with a dense table (--quant none) does: logits bit for bit, and each
// first-stage rank holds less by the table's saving.
TEST_P(BlockTables, TableOnlyInBlocksGivesTheDenseTablesLogits) {
  const std::string name = GetParam();
  if (name.find("-table-") == std::string::npos) GTEST_SKIP() << name << " has other quantized weights";
  const auto dense = load(Quantization::none, true);
  const ModelConfig& c = dense->config();
  const size_t table_f32 = static_cast<size_t>(c.vocab_size) * c.hidden_size * sizeof(float);
  EXPECT_EQ(dense->weight_bytes() - split_->weight_bytes(),
            split_->parallel().stage == 0 ? table_f32 - table_block_bytes() : 0u);
  Session dense_session(dense, {.max_sequences = 1}), blocks_session(split_, {.max_sequences = 1});
  Decoder dense_decoder(dense_session), blocks_decoder(blocks_session);
  for (uint64_t seed : {31u, 32u}) {
    const std::vector<int32_t> ids = prompt(9 + 4 * (seed - 31), seed);
    const std::vector<float> a = dense_decoder.score(ids), b = blocks_decoder.score(ids);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << seed;
  }
}

INSTANTIATE_TEST_SUITE_P(Gguf, BlockTables,
                         ::testing::Values("embedding-blocks/qwen2-q8_0.gguf", "embedding-blocks/qwen2-untied-q8_0.gguf",
                                           "embedding-blocks/gpt2-table-q8_0.gguf",
                                           "embedding-blocks/gemma2-table-q4_0.gguf",
                                           "embedding-blocks/qwen2-6heads-q8_0.gguf"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = std::filesystem::path(info.param).stem().string();
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// --- an FFN split in whole blocks of the down projection -----------------------------

// llama.cpp's Q4_K of a tiny Llama with FFN 768 (tests/fixtures/make_ffn768_gguf.py: hidden
// 256, 4 heads, 2 KV heads, one layer, every matrix Q4_K): down is 3 super-blocks of 256
// columns a row. At tp = 2 the ranks hold 512 and 256 FFN columns, each rank's down in its
// Q4_K blocks (an even split would cut the middle block); logits agree with one process's
// as the float models' do, greedy tokens are the same, and kestrel-size's figures for each
// rank are the rank's loaded weights and session memory. At tp = 4 the 3 blocks cannot go
// to 4 ranks: every rank refuses by name.
// The output projection's 128 columns per rank still cut its blocks (head cuts are not
// split in blocks): materialized, it computes a step of up to 6 tokens with exact
// activations where one process's blocks take 8-bit ones (cpu quantized_linear), so logits
// are compared on prompts of 7 tokens or more, where both compute with the dequantized
// values; the greedy steps (one token each) give the same tokens all the same here. Down's
// 8-bit activation blocks are the same 256 columns split or whole.
TEST(UnevenFfnSplit, RanksKeepWholeBlocksAndMatchWholeModel) {
  const auto path = fixture_dir() / "kquant" / "ffn768-Q4_K.gguf";
  const int tp = g_split.tensor_parallel;
  if (g_split.pipeline_parallel != 1 || (tp != 2 && tp != 4))
    GTEST_SKIP() << "runs with --tp 2 or 4, --pp 1 (the fixture has one layer)";
  ModelOptions options;
  options.num_threads = 1;
  options.device = g_device;
  if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
  const auto whole = Model::load(path, options);
  options.parallel = g_split;
  options.parallel.timeout_seconds = 120;
  if (tp == 4) {
    try {
      Model::load(path, options);
      ADD_FAILURE() << "tp 4 was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
      EXPECT_NE(e.message().find("ffn_size 768 is 3 blocks of 256 columns in the down projection as loaded, fewer "
                                 "than ParallelOptions.tensor_parallel 4"),
                std::string::npos)
          << e.message();
    }
    return;
  }
  const auto split = Model::load(path, options);
  const ParallelInfo& p = split->parallel();
  EXPECT_EQ(p.ffn_size, p.tensor_rank == 0 ? 512 : 256);
  const std::string formats = split->weight_formats();
  const QuantizedWeight& down = split->state().weights.layers.at(0).down_weight.quantized;
  EXPECT_EQ(down.format, QuantFormat::q4_k) << formats;
  EXPECT_EQ(down.cols, p.ffn_size);

  // kestrel-size: this rank's weights from the file's tensor table, and its session memory.
  const SessionOptions session_options = testing::f32_cache({.max_sequences = 2, .max_sequence_tokens = 64});
  Session session(split, session_options);
  const sizing::ModelShape shape = sizing::read_model_shape(path);
  sizing::SizingOptions so;
  so.device = split->device().kind;
  so.dtype = split->dtype();
  so.tp = 2;
  so.session = session_options;
  const sizing::Sizing sized = sizing::compute(shape, so);
  const sizing::FileWeights file(path);
  bool tied = false;
  const Shard shard = make_shard(split->config(), 2, 1, p.tensor_rank, 0, path.string(),
                                 file.ffn_alignment(Quantization::automatic, 0));
  const sizing::WeightBytes held = file.held(shard, Quantization::automatic, 0, split->dtype(), &tied);
  EXPECT_EQ(held.total(), split->weight_bytes()) << formats;
  if (p.tensor_rank == 0) {  // the largest rank, the one kestrel-size reports
    EXPECT_EQ(sized.largest().tp_rank, 0);
    EXPECT_EQ(sized.largest().weights.total(), split->weight_bytes());
    EXPECT_EQ(sized.largest().kv_cache_bytes, session.memory().kv_cache_bytes);
    EXPECT_EQ(sized.largest().activation_bytes, session.memory().activation_bytes);
  } else {
    EXPECT_LT(split->weight_bytes(), sized.largest().weights.total());
    EXPECT_LT(session.memory().activation_bytes, sized.largest().activation_bytes);
  }

  Session whole_session(whole, testing::f32_cache({.max_sequences = 1}));
  Session split_session(split, testing::f32_cache({.max_sequences = 1}));
  Decoder whole_decoder(whole_session), split_decoder(split_session);
  for (uint64_t seed : {41u, 42u, 43u}) {
    std::vector<int32_t> ids;
    for (float f : testing::random_floats(7 + 6 * (seed - 41), seed, 0.0f, 999.0f)) ids.push_back(static_cast<int32_t>(f));
    EXPECT_LE(max_abs_diff(whole_decoder.score(ids), split_decoder.score(ids)), kSplitVsWholeTolerance) << seed;
    GenerationRequest request;
    request.prompt_ids = ids;
    request.stop = {.max_new_tokens = 10, .stop_at_eos = false};
    EXPECT_EQ(whole_decoder.generate(request).tokens, split_decoder.generate(request).tokens) << seed;
  }
}

// --- experts split in whole blocks of their down projections ------------------------

// moe-blocks/qwen2-moe-q8_0.gguf (tests/fixtures/make_moe_blocks.py: tiny-qwen2-moe with
// experts of 64 columns and a shared expert of 96, stored in Q8_0): at tp = 2 every rank
// keeps each expert's gate / up rows and down columns in the file's blocks (one 32-column
// block of each down row) and the shared expert splits 64 + 32 (whole blocks, rank 0 one
// more); logits agree with one process's as the float models' do (the same blocks and the
// same 8-bit activation blocks, summed in another order), greedy tokens are the same, and
// kestrel-size's figure for each rank is its loaded weights. At tp = 4 the experts' 2
// blocks cannot go to 4 ranks: every rank refuses by name, as it does tiny-mixtral-q8_0's
// one block at tp = 2 (--quant none splits those by columns, materialized).
TEST(MoeBlocksSplit, ExpertsKeepWholeBlocksAndMatchWholeModel) {
  const auto path = fixture_dir() / "moe-blocks" / "qwen2-moe-q8_0.gguf";
  const int tp = g_split.tensor_parallel;
  if (tp == 1) GTEST_SKIP() << "runs with --tp 2 or more";
  ModelOptions options;
  options.num_threads = 1;
  options.device = g_device;
  if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
  const auto whole = Model::load(path, options);
  options.parallel = g_split;
  options.parallel.timeout_seconds = 120;
  auto expect_refused = [&](const std::filesystem::path& file, const std::string& what) {
    try {
      Model::load(file, options);
      ADD_FAILURE() << file << " was accepted at tp " << tp;
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
      EXPECT_NE(e.message().find(what), std::string::npos) << e.message();
    }
  };
  expect_refused(fixture_dir() / "tiny-mixtral-q8_0.gguf",
                 "expert_ffn_size 32 is 1 block of 32 columns in the down projection as loaded, fewer than "
                 "ParallelOptions.tensor_parallel " + std::to_string(tp));
  if (tp > 2) {
    expect_refused(path, "expert_ffn_size 64 is 2 blocks of 32 columns in the down projection as loaded, fewer than "
                         "ParallelOptions.tensor_parallel " + std::to_string(tp));
    return;
  }
  const auto split = Model::load(path, options);
  const ParallelInfo& p = split->parallel();
  EXPECT_EQ(p.expert_ffn_size, 32);
  EXPECT_EQ(p.shared_expert_ffn_size, p.tensor_rank == 0 ? 64 : 32);
  for (const LayerWeights& layer : split->state().weights.layers) {
    for (int e = 0; e < split->config().num_experts; ++e) {
      const QuantizedWeight &up = layer.moe.expert_up.at(e).quantized, &down = layer.moe.expert_down.at(e).quantized;
      EXPECT_EQ(up.format, QuantFormat::int8);  // Q8_0 kept as stored
      EXPECT_EQ(up.rows, 64);
      EXPECT_EQ(down.format, QuantFormat::int8);
      EXPECT_EQ(down.cols, 32);
    }
    EXPECT_EQ(layer.moe.shared_down.quantized.format, QuantFormat::int8);
    EXPECT_EQ(layer.moe.shared_down.quantized.cols, p.shared_expert_ffn_size);
  }
  const sizing::FileWeights file(path);
  const Shard shard = make_shard(split->config(), p.tensor_parallel, p.pipeline_parallel, p.tensor_rank, p.stage,
                                 path.string(), file.ffn_alignment(Quantization::automatic, 0));
  bool tied = false;
  EXPECT_EQ(file.held(shard, Quantization::automatic, 0, split->dtype(), &tied).total(), split->weight_bytes())
      << split->weight_formats();

  Session whole_session(whole, testing::f32_cache({.max_sequences = 1}));
  Session split_session(split, testing::f32_cache({.max_sequences = 1}));
  Decoder whole_decoder(whole_session), split_decoder(split_session);
  for (uint64_t seed : {51u, 52u, 53u}) {
    std::vector<int32_t> ids;
    for (float f : testing::random_floats(3 + 7 * (seed - 51), seed, 0.0f, 999.0f)) ids.push_back(static_cast<int32_t>(f));
    EXPECT_LE(max_abs_diff(whole_decoder.score(ids), split_decoder.score(ids)), kSplitVsWholeTolerance) << seed;
    GenerationRequest request;
    request.prompt_ids = ids;
    request.stop = {.max_new_tokens = 10, .stop_at_eos = false};
    EXPECT_EQ(whole_decoder.generate(request).tokens, split_decoder.generate(request).tokens) << seed;
  }
}

// Experts quantized at load, split: every rank quantizes its own rows and columns of each
// expert (int8 per channel, int4 in groups of 32: at tp = 2 one group of 16 columns in each
// rank's down of tiny-mixtral), and the split model keeps the top-1 agreement with HF that
// tests/models/moe_test.cc asks of one process (int8 85%, int4 25%; chance 0.1%).
TEST(QuantizedMoeSplit, ExpertsQuantizedAtLoadKeepTopOneAgreement) {
  if (g_split.tensor_parallel == 1) GTEST_SKIP() << "runs with --tp 2 or more";
  for (const char* name : {"tiny-mixtral", "tiny-qwen2-moe"}) {
    for (Quantization q : {Quantization::int8, Quantization::int4}) {
      SCOPED_TRACE(std::string(name) + " " + to_string(q));
      ModelOptions options;
      options.num_threads = 1;
      options.device = g_device;
      options.quantization = q;
      if (q == Quantization::int4) options.quant_group_size = 32;
      if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
      options.parallel = g_split;
      options.parallel.timeout_seconds = 120;
      const auto split = Model::load(fixture_dir() / name, options);
      const ModelConfig& c = split->config();
      for (const LayerWeights& layer : split->state().weights.layers) {
        if (layer.moe.empty()) continue;
        const QuantizedWeight& down = layer.moe.expert_down.at(0).quantized;
        EXPECT_EQ(down.format, q == Quantization::int8 ? QuantFormat::int8 : QuantFormat::int4);
        EXPECT_EQ(down.cols, c.expert_ffn_size / g_split.tensor_parallel);
      }
      const auto prompts = load_reference(fixture_dir() / name, c.vocab_size);
      Session session(split, testing::f32_cache());
      Decoder decoder(session);
      int agree = 0, total = 0;
      const int64_t V = c.vocab_size;
      for (const auto& p : prompts) {
        const std::vector<float> got = decoder.score(p.ids);
        for (size_t t = 0; t < p.ids.size(); ++t, ++total) {
          const float *row = got.data() + t * V, *ref = p.logits.data() + t * V;
          agree += std::max_element(row, row + V) - row == std::max_element(ref, ref + V) - ref;
        }
      }
      EXPECT_GE(agree, total * (q == Quantization::int8 ? 85 : 25) / 100) << agree << " of " << total;
    }
  }
}

// Dense weights split by single columns, so tp need not divide the FFN: a random Llama with
// FFN 251 (tp 2: 126 + 125 columns; tp 4: 63, 63, 63, 62) gives one process's logits and
// greedy tokens, at every --tp / --pp of the jobs.
TEST(UnevenFfnSplit, DenseFfnThatTpDoesNotDivide) {
  if (g_split.tensor_parallel == 1) GTEST_SKIP() << "runs with --tp 2 or more";
  ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 300;
  c.hidden_size = 64;
  c.num_layers = 4;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.ffn_size = 251;
  c.max_positions = 64;
  ModelOptions options;
  options.num_threads = 1;
  options.device = g_device;
  if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
  const auto whole = Model::random(c, options, 11);
  options.parallel = g_split;
  options.parallel.timeout_seconds = 120;
  const auto split = Model::random(c, options, 11);
  const ParallelInfo& p = split->parallel();
  const int tp = p.tensor_parallel, base = 251 / tp;
  EXPECT_EQ(p.ffn_size, base + (p.tensor_rank < 251 % tp ? 1 : 0));
  Session whole_session(whole, testing::f32_cache({.max_sequences = 1}));
  Session split_session(split, testing::f32_cache({.max_sequences = 1}));
  Decoder whole_decoder(whole_session), split_decoder(split_session);
  const std::vector<int32_t> ids = {5, 77, 123, 299, 0, 42, 180, 9, 250};
  const std::vector<float> a = whole_decoder.score(ids), b = split_decoder.score(ids);
  float scale = 0.0f;
  for (float v : a) scale = std::max(scale, std::fabs(v));
  ASSERT_GT(scale, 0.05f);  // logits that a wrong FFN split would move by far more than the tolerance
  EXPECT_LE(max_abs_diff(a, b), kSplitVsWholeTolerance);
  GenerationRequest request;
  request.prompt_ids = ids;
  request.stop = {.max_new_tokens = 10, .stop_at_eos = false};
  EXPECT_EQ(whole_decoder.generate(request).tokens, split_decoder.generate(request).tokens);
}

// --- what cannot run -----------------------------------------------------------------

Error load_error(const std::filesystem::path& path, ParallelOptions parallel) {
  ModelOptions options;
  options.num_threads = 1;
  options.parallel = parallel;
  options.parallel.timeout_seconds = 60;
  try {
    Model::load(path, options);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "loading " << path << " did not fail";
  return Error(ErrorCategory::internal, "no error");
}

TEST(SplitErrors, RankCountMustMatchTpTimesPp) {
  const int ranks = launcher_size();
  Error e = load_error(fixture_dir() / "tiny-llama", {.tensor_parallel = ranks, .pipeline_parallel = 2});
  EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
  EXPECT_NE(e.message().find("needs " + std::to_string(2 * ranks) + " ranks, but this MPI job has " +
                             std::to_string(ranks)),
            std::string::npos)
      << e.message();
}

TEST(SplitErrors, IndivisibleHeadsOrTooManyStagesNameTheDimension) {
  const int ranks = launcher_size();
  // The fixtures have 4 heads, 1000 vocabulary entries and 3 layers.
  if (ranks == 3) {
    Error e = load_error(fixture_dir() / "tiny-gpt2", {.tensor_parallel = 3});
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
    EXPECT_NE(e.message().find("num_heads 4 is not divisible by ParallelOptions.tensor_parallel 3"),
              std::string::npos)
        << e.message();
  } else if (ranks == 4) {
    Error e = load_error(fixture_dir() / "tiny-gpt2", {.pipeline_parallel = 4});
    EXPECT_NE(e.message().find("pipeline_parallel = 4 is more stages than the 3 layers"), std::string::npos)
        << e.message();
  } else {
    GTEST_SKIP() << "needs 3 or 4 ranks (this job has " << ranks << ")";
  }
}

// A file that is missing on one node: every rank gets the same error naming that rank,
// instead of the others waiting for it in the first collective call.
TEST(SplitErrors, FileMissingOnOneRankFailsEveryRank) {
  const int ranks = launcher_size();
  const int bad = ranks - 1;
  auto path = launcher_rank() == bad ? fixture_dir() / "no-such-model" : fixture_dir() / "tiny-llama";
  Error e = load_error(path, g_split);
  EXPECT_EQ(e.category(), ErrorCategory::io);
  EXPECT_NE(e.message().find("rank " + std::to_string(bad) + " of " + std::to_string(ranks) + ": "),
            std::string::npos)
      << e.message();
  EXPECT_NE(e.message().find("no-such-model"), std::string::npos) << e.message();
}

// The split model, with a short timeout for the tests where a rank goes missing.
std::shared_ptr<const Model> load_split(const char* fixture, double timeout_seconds) {
  ModelOptions options;
  options.num_threads = 1;
  options.parallel = g_split;
  options.parallel.timeout_seconds = timeout_seconds;
  return Model::load(fixture_dir() / fixture, options);
}

GenerationRequest ten_tokens_after_hello() {
  GenerationRequest request;
  request.prompt = "Hello";
  request.stop = {.max_new_tokens = 10, .stop_at_eos = false};
  return request;
}

// A session that one rank cannot create (here: an option only it gets wrong; on GPUs, less
// free memory on one of them) fails on every rank with that rank's error.
TEST(SplitErrors, SessionFailingOnOneRankFailsEveryRank) {
  const int bad = launcher_size() - 1;
  auto model = load_split("tiny-llama", 60);
  SessionOptions options;
  if (launcher_rank() == bad) options.max_sequences = 0;
  try {
    Session session(model, testing::f32_cache(options));
    ADD_FAILURE() << "the session was created";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
    EXPECT_NE(e.message().find("rank " + std::to_string(bad) + " of "), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("SessionOptions.max_sequences = 0"), std::string::npos) << e.message();
  }
  Session session(model, testing::f32_cache({.max_sequences = 1}));  // the model is still usable on every rank
  Decoder decoder(session);
  EXPECT_EQ(decoder.generate(ten_tokens_after_hello()).tokens.size(), 10u);
}

// Run alone (tests/CMakeLists.txt, --fail-rank R): rank R's streaming callback throws in
// the middle of a generation, so R leaves the step loop while its peers wait for it in the
// next collective call. They must give up after the timeout with an error naming the
// operation, not hang.
TEST(FailingRank, PeersOfAFailedRankTimeOutWithAnError) {
  if (g_fail_rank < 0) GTEST_SKIP() << "runs with --fail-rank";
  Session session(load_split("tiny-llama", 3), testing::f32_cache({.max_sequences = 1}));
  Decoder decoder(session);
  const GenerationRequest request = ten_tokens_after_hello();
  int tokens = 0;
  auto on_token = [&](const StreamEvent&) {
    if (++tokens == 2 && launcher_rank() == g_fail_rank) throw std::runtime_error("injected failure");
    return true;
  };
  if (launcher_rank() == g_fail_rank) {
    EXPECT_THROW(decoder.generate(request, on_token), std::runtime_error);
    return;
  }
  try {
    decoder.generate(request, on_token);
    ADD_FAILURE() << "generate went on without rank " << g_fail_rank;
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::device);
    EXPECT_NE(e.message().find("for its peers"), std::string::npos) << e.message();
  }
}

// Run alone (tests/parallel/expect_job_failure.cmake, --die-rank R): rank R exits abruptly
// after loading, as a crashed process would. The job must end with an error within the
// timeout, whether the launcher notices the dead rank first or the survivors give up.
TEST(DyingRank, JobEndsWhenARankDies) {
  if (g_die_rank < 0) GTEST_SKIP() << "runs with --die-rank";
  Session session(load_split("tiny-gpt2", 5), testing::f32_cache({.max_sequences = 1}));
  Decoder decoder(session);
  if (launcher_rank() == g_die_rank) std::_Exit(3);
  try {
    decoder.generate(ten_tokens_after_hello());
  } catch (const Error& e) {
    std::cerr << "rank " << launcher_rank() << ": " << e.what() << std::endl;
    abort_parallel_run(2);
  }
}

}  // namespace
}  // namespace kestrel

// --tp N --pp N (after gtest's own flags): the split that the parallel tests use.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--tp") == 0) kestrel::g_split.tensor_parallel = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--pp") == 0) kestrel::g_split.pipeline_parallel = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--device") == 0) kestrel::g_device = kestrel::parse_device(argv[i + 1], "--device");
    if (std::strcmp(argv[i], "--fail-rank") == 0) kestrel::g_fail_rank = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--die-rank") == 0) kestrel::g_die_rank = std::atoi(argv[i + 1]);
  }
  // Only rank 0 prints its progress; the other ranks print their failures.
  if (kestrel::launcher_rank() != 0) GTEST_FLAG_SET(brief, true);
  return RUN_ALL_TESTS();
}
