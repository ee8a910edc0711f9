// Models and tokenizers read from GGUF files: the tiny fixtures (tests/fixtures/
// make_tiny_gguf.py) as the loaders see them, and copies of them with one thing wrong,
// each of which must fail with an error of the right category naming the culprit.
#include <algorithm>

#include <gtest/gtest.h>

#include <kestrel/chat.h>
#include <kestrel/error.h>
#include <kestrel/model.h>
#include <nlohmann/json.hpp>

#include "gguf_editor.h"
#include "loaders/gguf_source.h"
#include "test_support.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;
using testing::GgufEditor;

fs::path tiny_llama() { return testing::fixture_dir() / "tiny-llama.gguf"; }
fs::path tiny_gpt2() { return testing::fixture_dir() / "tiny-gpt2.gguf"; }

// Writes the edited file and loads it, expecting an Error of `category` whose message
// names the file and every string in `culprits`.
void expect_load_error(const GgufEditor& edited, const std::string& file_name, ErrorCategory category,
                       const std::vector<std::string>& culprits) {
  const fs::path path = testing::temp_dir("gguf_model") / file_name;
  edited.write(path);
  try {
    Model::load(path);
    ADD_FAILURE() << file_name << ": loaded without error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), category) << e.what();
    EXPECT_NE(e.message().find(file_name), std::string::npos) << e.what();
    for (const auto& c : culprits) EXPECT_NE(e.message().find(c), std::string::npos) << c << " in: " << e.what();
  }
}

TEST(GgufSource, ShapesAreRowMajorAndQuantizedTensorsKeepTheirBlockType) {
  GgufFile file(tiny_llama());
  GgufSource source(file);
  const SourceTensor* q = source.find("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{64, 64}));
  EXPECT_FALSE(q->block_type.has_value());
  EXPECT_EQ(q->dtype, DType::f32);
  const SourceTensor* k = source.find("blk.0.attn_k.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{32, 64}));  // [out = nkv * hd, in = H]
  const SourceTensor* down = source.find("blk.2.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->shape, (std::vector<int64_t>{64, 160}));
  EXPECT_EQ(down->block_type, GgmlType::q8_0);
  EXPECT_EQ(down->bytes, 64u * 160 / 32 * 34);
  EXPECT_EQ(source.find("output.weight")->shape, (std::vector<int64_t>{1000, 64}));
  EXPECT_EQ(source.find("no.such.tensor"), nullptr);
  EXPECT_TRUE(is_gguf_file(tiny_llama()));
  EXPECT_FALSE(is_gguf_file(testing::fixture_dir() / "tiny-llama" / "config.json"));
  EXPECT_FALSE(is_gguf_file(testing::fixture_dir() / "tiny-llama"));
}

TEST(GgufModel, LlamaConfigComesFromMetadata) {
  auto model = Model::load(tiny_llama(), {.quantization = Quantization::none});
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.vocab_size, 1000);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.ffn_size, 160);
  EXPECT_EQ(c.max_positions, 128);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FALSE(c.tied_embeddings);  // output.weight is present
  EXPECT_FALSE(model->chat_template().empty());
  // With quantization none, quantized tensors are dequantized to f32 like the others: 64x1000 embedding and head,
  // 3 layers of (64 + 2 * 32) x 64 QKV, 64x64 out, 320x64 up, 64x160 down, 2 x 64 norms, and
  // the 8 rotary inverse frequencies.
  const size_t params = 2 * 1000 * 64 + 3 * (128 * 64 + 64 * 64 + 320 * 64 + 64 * 160 + 2 * 64) + 64 + 8;
  EXPECT_EQ(model->weight_bytes(), params * sizeof(float));
}

TEST(GgufModel, Gpt2ConfigComesFromMetadataAndTheHeadIsTied) {
  auto model = Model::load(tiny_gpt2());
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.architecture, "gpt2");
  EXPECT_EQ(c.vocab_size, 1000);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.ffn_size, 256);
  EXPECT_EQ(c.max_positions, 128);
  EXPECT_TRUE(c.tied_embeddings);
  const size_t params = 1000 * 64 + 128 * 64 + 2 * 64 +
                        3 * (192 * 64 + 192 + 64 * 64 + 64 + 256 * 64 + 256 + 64 * 256 + 64 + 4 * 64);
  EXPECT_EQ(model->weight_bytes(), params * sizeof(float));  // the tied head stored once
}

// The GGUF tokenizer against Hugging Face tokenizers on the 58 tiny-gpt2 cases.
TEST(GgufTokenizer, MatchesHuggingFaceOnTheTinyGpt2Cases) {
  const Tokenizer tok = Tokenizer::from_gguf_file(tiny_gpt2());
  EXPECT_EQ(tok.vocab_size(), 1000);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 0);
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.pre_tokenizer(), PreTokenizer::gpt2);
  const auto cases = nlohmann::json::parse(
      testing::read_file(testing::fixture_dir() / "tiny-gpt2" / "tokenizer_cases.json"));
  ASSERT_GE(cases.size(), 50u);
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids, c.at("ids").get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(tok.decode(ids), c.at("decoded").get<std::string>()) << text;
  }
}

// The o200k tokenizer (tiny-gpt4o-tokenizer) written as llama.cpp's converter writes
// gpt-oss's: tokens by id, "left right" merges, added tokens typed control (3) or
// user-defined (4), tokenizer.ggml.pre "gpt-4o", no add_bos_token. It encodes every case as
// Hugging Face tokenizers does.
TEST(GgufTokenizer, Gpt4oMatchesHuggingFace) {
  const fs::path dir = testing::fixture_dir() / "tiny-gpt4o-tokenizer";
  const auto json = nlohmann::json::parse(testing::read_file(dir / "tokenizer.json"));
  size_t vocab_size = 0;
  for (const auto& id : json.at("model").at("vocab")) vocab_size = std::max(vocab_size, id.get<size_t>() + 1);
  for (const auto& added : json.at("added_tokens")) {
    vocab_size = std::max(vocab_size, added.at("id").get<size_t>() + 1);
  }
  std::vector<std::string> tokens(vocab_size);
  std::vector<int32_t> types(tokens.size(), 1);
  for (const auto& [piece, id] : json.at("model").at("vocab").items()) tokens.at(id.get<size_t>()) = piece;
  for (const auto& added : json.at("added_tokens")) {
    const size_t id = added.at("id").get<size_t>();
    tokens.at(id) = added.at("content").get<std::string>();
    types.at(id) = added.at("special").get<bool>() ? 3 : 4;
  }
  const auto merges = json.at("model").at("merges").get<std::vector<std::string>>();
  const fs::path path = testing::temp_dir("gguf_gpt4o") / "gpt4o.gguf";
  GgufEditor(tiny_gpt2())
      .set("tokenizer.ggml.tokens", GgufArray{tokens})
      .set("tokenizer.ggml.token_type", GgufArray{types})
      .set("tokenizer.ggml.merges", GgufArray{merges})
      .set("tokenizer.ggml.pre", std::string("gpt-4o"))
      .set("tokenizer.ggml.bos_token_id", uint32_t{0})
      .set("tokenizer.ggml.eos_token_id", uint32_t{5})
      .erase("tokenizer.ggml.add_bos_token")
      .write(path);
  const Tokenizer tok = Tokenizer::from_gguf_file(path);
  EXPECT_EQ(tok.pre_tokenizer(), PreTokenizer::gpt4o);
  EXPECT_FALSE(tok.add_bos()) << "llama.cpp adds no BOS for gpt-4o";
  EXPECT_EQ(tok.eos_id(), tok.token_id("<|return|>"));
  const auto cases = nlohmann::json::parse(testing::read_file(dir / "tokenizer_cases.json"));
  ASSERT_GE(cases.size(), 55u);
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids, c.at("ids").get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(tok.decode(ids), c.at("decoded").get<std::string>()) << text;
  }
}

TEST(GgufTokenizer, PreTokenizerNamesMapToKestrelsSplitters) {
  const std::vector<std::pair<std::string, PreTokenizer>> names{
      {"gpt-2", PreTokenizer::gpt2}, {"default", PreTokenizer::gpt2}, {"smollm", PreTokenizer::smollm},
      {"llama-bpe", PreTokenizer::llama3}, {"llama3", PreTokenizer::llama3}, {"gpt-4o", PreTokenizer::gpt4o}};
  const fs::path dir = testing::temp_dir("gguf_pre");
  for (const auto& [name, kind] : names) {
    const fs::path path = dir / (name + ".gguf");
    // Without tokenizer.ggml.add_bos_token, the pre-tokenizer decides (as in llama.cpp).
    GgufEditor(tiny_gpt2()).set("tokenizer.ggml.pre", std::string(name)).erase("tokenizer.ggml.add_bos_token").write(path);
    const Tokenizer tok = Tokenizer::from_gguf_file(path);
    EXPECT_EQ(tok.pre_tokenizer(), kind) << name;
    EXPECT_EQ(tok.add_bos(), kind == PreTokenizer::llama3) << name << ": llama.cpp's default add_bos";
  }
  const fs::path absent = dir / "absent.gguf";
  GgufEditor(tiny_gpt2()).erase("tokenizer.ggml.pre").write(absent);
  EXPECT_EQ(Tokenizer::from_gguf_file(absent).pre_tokenizer(), PreTokenizer::gpt2);
}

// Token type 4 (user-defined) is an added token: matched verbatim even when special
// tokens are not parsed, and not special.
TEST(GgufTokenizer, UserDefinedTokensAreAddedNotSpecial) {
  std::vector<int32_t> types(1000, 1);
  types[0] = 4;
  const fs::path path = testing::temp_dir("gguf_types") / "user_defined.gguf";
  GgufEditor(tiny_gpt2()).set("tokenizer.ggml.token_type", GgufArray{types}).write(path);
  const Tokenizer tok = Tokenizer::from_gguf_file(path);
  EXPECT_FALSE(tok.is_special(0));
  EXPECT_EQ(tok.encode("<|endoftext|>", /*parse_special=*/false), std::vector<int32_t>{0});
}

// A template that writes the BOS itself (Llama 3) with a tokenizer that adds one: the
// conversation starts with exactly one BOS.
TEST(GgufTokenizer, EncodeChatDoesNotDoubleTheBos) {
  const fs::path path = testing::temp_dir("gguf_bos") / "bos.gguf";
  const std::string llama3 =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
      "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
      "{{ content }}{% endfor %}";
  GgufEditor(tiny_llama()).set("tokenizer.ggml.add_bos_token", true).set("tokenizer.chat_template", llama3).write(path);
  auto model = Model::load(path);
  ASSERT_TRUE(model->tokenizer().add_bos());
  const std::vector<ChatMessage> messages{{"user", "Hi"}};
  const std::string text = apply_chat_template(*model, messages);
  ASSERT_TRUE(text.starts_with("<|endoftext|><|start_header_id|>user")) << text;
  const std::vector<int32_t> ids = encode_chat(*model, text);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], 0);
  EXPECT_NE(ids[1], 0);
  EXPECT_EQ(model->tokenizer().encode("Hi").front(), 0) << "plain encode() still adds the BOS";
}

// --- bad files ---------------------------------------------------------------------------

TEST(GgufBadModel, UnknownArchitectureIsUnsupportedAndNamed) {
  expect_load_error(GgufEditor(tiny_llama()).set("general.architecture", std::string("mamba")),
                    "mamba.gguf", ErrorCategory::unsupported, {"general.architecture", "'mamba'"});
}

TEST(GgufBadModel, MissingArchitectureKeyIsNamed) {
  expect_load_error(GgufEditor(tiny_llama()).erase("general.architecture"), "no_arch.gguf", ErrorCategory::format,
                    {"general.architecture"});
}

TEST(GgufBadModel, MissingMetadataKeyIsNamed) {
  expect_load_error(GgufEditor(tiny_llama()).erase("llama.block_count"), "no_blocks.gguf", ErrorCategory::format,
                    {"llama.block_count", "missing"});
}

TEST(GgufBadModel, MetadataKeyOfTheWrongTypeIsNamed) {
  expect_load_error(GgufEditor(tiny_llama()).set("llama.embedding_length", std::string("64")), "wrong_type.gguf",
                    ErrorCategory::format, {"llama.embedding_length"});
}

TEST(GgufBadModel, MissingTensorIsNamed) {
  expect_load_error(GgufEditor(tiny_llama()).drop_tensor("blk.1.ffn_down.weight"), "no_down.gguf",
                    ErrorCategory::format, {"'blk.1.ffn_down.weight'", "missing", "layer 1 down_weight"});
}

TEST(GgufBadModel, WrongShapeIsNamedWithBothShapes) {
  expect_load_error(GgufEditor(tiny_llama()).replace_tensor("blk.0.attn_k.weight", {64, 64}), "wide_k.gguf",
                    ErrorCategory::format, {"'blk.0.attn_k.weight'", "[64, 64]", "[128, 64]"});
  expect_load_error(GgufEditor(tiny_llama()).replace_tensor("token_embd.weight", {1000, 32}), "narrow_embd.gguf",
                    ErrorCategory::format, {"'token_embd.weight'", "[1000, 32]", "[1000, 64]"});
}

TEST(GgufBadModel, UnknownTokenizerModelIsUnsupported) {
  expect_load_error(GgufEditor(tiny_llama()).set("tokenizer.ggml.model", std::string("t5")), "t5.gguf",
                    ErrorCategory::unsupported, {"tokenizer.ggml.model", "'t5'", "SentencePiece ('llama')"});
}

// SentencePiece merges by score: a "llama" tokenizer without scores is refused by name.
TEST(GgufBadModel, SentencePieceWithoutScoresIsNamed) {
  expect_load_error(GgufEditor(tiny_llama()).set("tokenizer.ggml.model", std::string("llama")), "spm.gguf",
                    ErrorCategory::format, {"tokenizer.ggml.scores", "missing"});
}

TEST(GgufBadModel, UnknownPreTokenizerIsUnsupportedAndNamed) {
  expect_load_error(GgufEditor(tiny_llama()).set("tokenizer.ggml.pre", std::string("qwen2")), "qwen_pre.gguf",
                    ErrorCategory::unsupported, {"tokenizer.ggml.pre", "'qwen2'"});
}

TEST(GgufBadModel, MissingTokenizerIsNamed) {
  expect_load_error(GgufEditor(tiny_llama()).erase("tokenizer.ggml.model"), "no_tokenizer.gguf",
                    ErrorCategory::format, {"tokenizer.ggml.model"});
  expect_load_error(GgufEditor(tiny_llama()).erase("tokenizer.ggml.merges"), "no_merges.gguf",
                    ErrorCategory::format, {"tokenizer.ggml.merges"});
}

TEST(GgufBadModel, BadMergeIsNamedByIndex) {
  GgufFile file(tiny_llama());
  std::vector<std::string> merges = *file.get_string_array("tokenizer.ggml.merges");
  merges[5] = "nospace";
  expect_load_error(GgufEditor(tiny_llama()).set("tokenizer.ggml.merges", GgufArray{merges}), "bad_merge.gguf",
                    ErrorCategory::format, {"tokenizer.ggml.merges[5]", "'nospace'"});
}

// linear and yarn are read (yarn: tests/models/rope_context_test.cc); llama.cpp's other
// types are refused by name.
TEST(GgufBadModel, RopeScalingOtherThanLinearAndYarnIsUnsupported) {
  expect_load_error(GgufEditor(tiny_llama())
                        .set("llama.rope.scaling.type", std::string("longrope"))
                        .set("llama.rope.scaling.factor", 4.0f),
                    "longrope.gguf", ErrorCategory::unsupported, {"llama.rope.scaling.type", "'longrope'"});
}

TEST(GgufBadModel, Qwen2RopeScalingOtherThanYarnIsUnsupportedAndNamed) {
  expect_load_error(GgufEditor(testing::fixture_dir() / "tiny-qwen2.gguf")
                        .set("qwen2.rope.scaling.type", std::string("linear"))
                        .set("qwen2.rope.scaling.factor", 4.0f),
                    "qwen2_linear.gguf", ErrorCategory::unsupported, {"qwen2.rope.scaling.type", "'linear'"});
}

TEST(GgufBadModel, RopeFreqsOfTheWrongLengthIsNamed) {
  expect_load_error(GgufEditor(testing::fixture_dir() / "tiny-llama3.gguf").replace_tensor("rope_freqs.weight", {4}),
                    "short_rope_freqs.gguf", ErrorCategory::format, {"rope_freqs.weight", "4 values", "expected 8"});
}

TEST(GgufBadModel, TooFewTokensForTheEmbeddingIsAShapeError) {
  GgufFile file(tiny_llama());
  std::vector<std::string> tokens = *file.get_string_array("tokenizer.ggml.tokens");
  tokens.resize(900);
  std::vector<int32_t> types(900, 1);
  expect_load_error(GgufEditor(tiny_llama())
                        .set("tokenizer.ggml.tokens", GgufArray{tokens})
                        .set("tokenizer.ggml.token_type", GgufArray{types})
                        .set("tokenizer.ggml.merges", GgufArray{std::vector<std::string>{}}),
                    "short_vocab.gguf", ErrorCategory::format, {"'token_embd.weight'", "[1000, 64]", "[900, 64]"});
}

TEST(GgufBadModel, AFileThatIsNeitherGgufNorADirectoryIsNamed) {
  const fs::path path = testing::temp_dir("gguf_other") / "weights.bin";
  testing::write_file(path, "not a model");
  try {
    Model::load(path);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::unsupported);
    EXPECT_NE(e.message().find("weights.bin"), std::string::npos) << e.what();
    EXPECT_NE(e.message().find("GGUF"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kestrel
