// The default model, SmolLM2-135M-Instruct (Q4_1 GGUF, fetched into models/ by
// scripts/fetch-default-model.sh, which scripts/test.sh runs): its configuration, its
// tokenizer, its chat template and a greedy answer, and the memory it takes. Skipped, with
// the reason, when the file is absent.
#include <gtest/gtest.h>

#include <filesystem>
#include <kestrel/kestrel.h>

namespace kestrel {
namespace {

const std::filesystem::path kModelPath =
    std::filesystem::path(KESTREL_SOURCE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";

class SmolLM2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(kModelPath)) model_ = Model::load(kModelPath);
  }
  static void TearDownTestSuite() { model_.reset(); }
  void SetUp() override {
    if (!model_)
      GTEST_SKIP() << kModelPath << " is absent: run scripts/fetch-default-model.sh (scripts/test.sh does)";
  }
  static std::shared_ptr<const Model> model_;
};
std::shared_ptr<const Model> SmolLM2::model_;

TEST_F(SmolLM2, ConfigComesFromTheGgufMetadata) {
  const ModelConfig& c = model_->config();
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.ffn_size, 1536);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.max_positions, 8192);
  EXPECT_TRUE(c.tied_embeddings);  // no output.weight: the head is token_embd (Q8_0)
}

TEST_F(SmolLM2, TokenizerIsTheSmolLMByteLevelBpe) {
  const Tokenizer& tok = model_->tokenizer();
  EXPECT_EQ(tok.vocab_size(), 49152);
  EXPECT_EQ(tok.pre_tokenizer(), PreTokenizer::smollm);
  EXPECT_EQ(tok.bos_id(), 1);  // <|im_start|>
  EXPECT_EQ(tok.eos_id(), 2);  // <|im_end|>
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.encode("<|im_start|>user\nHi<|im_end|>").front(), 1);
  EXPECT_EQ(tok.encode("<|im_start|>user\nHi<|im_end|>").back(), 2);
  EXPECT_EQ(tok.encode("12345").size(), 5u) << "the smollm pre-tokenizer splits digits one by one";
  const std::string text = "The capital of France is Paris. Grüße! 你好";
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
}

TEST_F(SmolLM2, BytesWithoutATokenAreRefusedNotDropped) {
  // The vocab lacks 21 byte tokens (0xfe and 0xff among them) and names no unknown token
  // usable for them: such a byte is an error naming its offset, never silently dropped.
  const Tokenizer& tok = model_->tokenizer();
  try {
    tok.encode("ok \xff\xfe");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("byte 0xff at offset 3"), std::string::npos) << e.what();
  }
  // Invalid UTF-8 whose bytes have tokens still round-trips ("\xc3" alone, "\x80").
  const std::string text = "caf\xc3 \x80!";
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
  // Through a request: the error names the request and the prompt.
  Session session(model_, {.max_sequences = 1, .max_sequence_tokens = 64});
  Decoder decoder(session);
  GenerationRequest r;
  r.prompt = "\xff\xfe";
  try {
    decoder.generate(r);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("request 0: prompt: encode: byte 0xff at offset 0"), std::string::npos)
        << e.what();
  }
}

TEST_F(SmolLM2, ChatTemplateAndGreedyAnswerMentionsParis) {
  const std::vector<ChatMessage> messages{{"user", "What is the capital of France?"}};
  const std::string prompt = apply_chat_template(*model_, messages);
  EXPECT_EQ(prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n");
  Session session(model_, {.max_sequences = 1, .max_sequence_tokens = 256});
  Decoder decoder(session);
  GenerationRequest request;
  request.prompt_ids = encode_chat(*model_, prompt);
  request.stop.max_new_tokens = 32;
  GenerationResult result = decoder.generate(request);
  EXPECT_NE(result.text.find("Paris"), std::string::npos) << result.text;
  EXPECT_EQ(result.finish, FinishReason::stop_token) << result.text;  // <|im_end|> ends the answer
}

TEST_F(SmolLM2, MemoryFootprint) {
  const ModelConfig& c = model_->config();
  const size_t H = c.hidden_size, F = c.ffn_size, V = c.vocab_size, kv = c.num_kv_heads * c.head_dim;
  const size_t per_layer = H * H + 2 * kv * H + H * H + 3 * F * H + 2 * H;
  const size_t params = V * H + c.num_layers * per_layer + H;  // tied head stored once
  EXPECT_EQ(params, 134515008u);
  // By default the file's blocks stay as stored: the layers' Q4_1 as int4 (16 bytes of
  // nibbles, an f16 scale and min per 32 weights), the tied Q8_0 head as int8 (32 bytes and
  // an f32 scale per 32), which is also the embedding table; the norms and the rotary
  // inverse frequencies (head_dim / 2) in f32.
  const size_t linear = c.num_layers * (per_layer - 2 * H), norms = c.num_layers * 2 * H + H;
  const size_t rotary = c.head_dim / 2;
  EXPECT_EQ(model_->weight_bytes(), linear / 32 * 20 + V * H / 32 * 36 + (norms + rotary) * sizeof(float));
  EXPECT_EQ(model_->weight_formats(), "int4 x120 + int8 x1");

  Session session(model_, {.max_sequences = 1, .max_sequence_tokens = 1024});
  const SessionMemory m = session.memory();
  // K and V, 1024 positions, in the CPU's default f16 cache; twice that in f32.
  EXPECT_EQ(m.kv_cache_bytes, size_t{2} * c.num_layers * kv * 1024 * sizeof(uint16_t));
  EXPECT_EQ(Session(model_, {.max_sequences = 1, .max_sequence_tokens = 1024, .kv_dtype = DType::f32}).memory().kv_cache_bytes,
            2 * m.kv_cache_bytes);
  EXPECT_GT(m.activation_bytes, 0u);
  EXPECT_LT(m.activation_bytes, size_t{64} << 20);
}

}  // namespace
}  // namespace kestrel
