// Tensor and pipeline parallel runs, on the CPU under mpirun (tests/CMakeLists.txt starts
// this binary as 2, 3 and 4 ranks with --tp / --pp). Every rank runs every test; a test
// fails the job if it fails on any rank.
//
// Each model is run split (--tp x --pp over the MPI job) and whole on this rank alone
// (ParallelOptions 1 x 1 never touches MPI), on the same inputs: greedy tokens must be
// identical, to each other and to Hugging Face transformers' (the fixtures' reference),
// and logits must agree within fp32 reduction-order tolerance; GGUF files whose embedding
// table stays in its blocks (BlockTables) agree with one process's the same way. The error tests check that
// what cannot run says so on every rank instead of hanging. Weights kept in the file's
// blocks, split, are in parallel_blocks_test.cc (the same binary).
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
#include "parallel_support.h"
#include "reference_fixture.h"
#include "test_support.h"
#include "tools/held_weights.h"

namespace kestrel {

ParallelOptions g_split;
Device g_device;

namespace {

using testing::fixture_dir;
using testing::load_reference;
using testing::ReferencePrompt;

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

int g_fail_rank = -1;     // from --fail-rank: the rank FailingRank makes fail
int g_die_rank = -1;      // from --die-rank: the rank DyingRank kills

struct ModelCase {
  const char* name;
  const char* model;
  const char* reference;
};
void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.model; }

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
// per session on every rank; Phi-4-mini's partial rotary with it (make_tiny_phi4_olmo2.py). The reference holds for prompts past the original 16
// positions in a default (64-position) session (tests/models/rope_context_test.cc); every
// prompt matches the whole model.
TEST(Phi3Split, LogitsMatchWholeModelAndHfAndGreedyTokensHf) {
  ModelOptions options;
  options.num_threads = 1;
  options.quantization = Quantization::none;
  options.device = g_device;
  if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
  for (const char* file : {"tiny-phi3", "tiny-phi3.gguf", "tiny-phi4-mini", "tiny-phi4-mini.gguf"}) {
    auto whole_model = Model::load(fixture_dir() / file, options);
    if (g_split.pipeline_parallel > whole_model->config().num_layers) GTEST_SKIP() << "2 layers";
    options.parallel = g_split;
    options.parallel.timeout_seconds = 120;
    auto split_model = Model::load(fixture_dir() / file, options);
    options.parallel = {};
    std::string reference = file;  // the folder of a file's reference: its name without .gguf
    if (reference.ends_with(".gguf")) reference.resize(reference.size() - 5);
    const auto prompts = load_reference(fixture_dir() / reference, whole_model->config().vocab_size);
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

// Families that split by pipeline stages only: each file's stages match the whole model
// and transformers (logits within `hf_tolerance`, greedy tokens exact); under tp > 1 every
// rank refuses it with a message containing `refusal`.
void expect_stages_only(std::initializer_list<const char*> files, const char* reference, const char* refusal) {
  ModelOptions options;
  options.num_threads = 1;
  options.quantization = Quantization::none;
  options.device = g_device;
  if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
  for (const char* file : files) {
    SCOPED_TRACE(file);
    options.parallel = {};
    auto whole_model = Model::load(fixture_dir() / file, options);
    if (g_split.pipeline_parallel > whole_model->config().num_layers) GTEST_SKIP() << "2 layers";
    options.parallel = g_split;
    options.parallel.timeout_seconds = 120;
    if (g_split.tensor_parallel > 1) {
      try {
        Model::load(fixture_dir() / file, options);
        ADD_FAILURE() << "accepted at tp " << g_split.tensor_parallel;
      } catch (const Error& e) {
        EXPECT_EQ(e.category(), ErrorCategory::unsupported) << e.what();
        EXPECT_NE(e.message().find(refusal), std::string::npos) << e.what();
      }
      continue;
    }
    auto split_model = Model::load(fixture_dir() / file, options);
    const auto prompts = load_reference(fixture_dir() / reference, whole_model->config().vocab_size);
    Session whole(whole_model, testing::f32_cache()), split(split_model, testing::f32_cache({.max_sequences = 1}));
    Decoder whole_decoder(whole), split_decoder(split);
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::vector<float> a = whole_decoder.score(prompts[i].ids);
      std::vector<float> b = split_decoder.score(prompts[i].ids);
      EXPECT_LE(max_abs_diff(a, b), kSplitVsWholeTolerance) << "prompt " << i;
      EXPECT_LE(max_abs_diff(b, prompts[i].logits), hf_tolerance(whole_model->config(), prompts[i].logits))
          << "prompt " << i;
      EXPECT_EQ(split_decoder.generate(testing::greedy_request(prompts[i])).tokens, prompts[i].greedy) << "prompt " << i;
    }
  }
}

// OLMo 2 (make_tiny_phi4_olmo2.py): its q / k norms span every head of a token, so no rank
// of tp > 1 can compute them.
TEST(Olmo2Split, PipelineStagesMatchWholeModelAndHfAndTensorParallelIsRefused) {
  expect_stages_only({"tiny-olmo2", "tiny-olmo2.gguf"}, "tiny-olmo2", "tensor parallelism");
}

// gpt-oss (tests/fixtures/make_tiny_gpt_oss.py): each stage's layers with their own windows
// and sinks; under tp > 1 the experts' biases are refused (each rank's MoE output is a
// partial sum, and a down bias would be added tp times).
TEST(GptOssSplit, StagesMatchWholeModelAndHfAndTensorParallelIsRefused) {
  expect_stages_only({"tiny-gpt-oss"}, "tiny-gpt-oss", "biases");
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
