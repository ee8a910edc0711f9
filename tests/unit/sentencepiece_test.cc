// SentencePiece tokenizers: conformance with llama.cpp (GGUF) and Hugging Face `tokenizers`
// (tokenizer.json) on the 2000 strings of tests/fixtures/spm-cases (make_spm_cases.py),
// ids and decoded text, and the rules that set the two apart.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kestrel/chat.h"
#include "kestrel/decoder.h"
#include "kestrel/error.h"
#include "kestrel/model.h"
#include "kestrel/session.h"
#include "kestrel/tokenizer.h"
#include "test_support.h"

namespace kestrel {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

fs::path spm_dir() { return testing::fixture_dir(); }

json load(const std::string& name) {
  return json::parse(testing::read_file(spm_dir() / "spm-cases" / (name + ".json")));
}

std::string printable(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Counts the strings where Kestrel differs from the reference and shows the first few.
class Mismatches {
 public:
  explicit Mismatches(std::string what) : what_(std::move(what)) {}
  template <typename T>
  void check(const T& got, const T& want, const std::string& text, const char* field) {
    if (got == want) return;
    if (++count_ <= 5) ADD_FAILURE() << what_ << " " << field << " differs for " << printable(text);
  }
  ~Mismatches() { EXPECT_EQ(count_, 0) << what_ << ": strings that differ from the reference"; }

 private:
  std::string what_;
  size_t count_ = 0;
};

// ids = encode(s), decoded = decode(ids), decoded_skip = decode(ids, skip_special) for
// every string; ids_plain (GGUF only) = encode(s, parse_special = false) where it differs.
void expect_cases(const Tokenizer& tok, const std::string& name) {
  const json strings = load("strings");
  const json ref = load(name);
  ASSERT_GE(strings.size(), 2000u);
  ASSERT_EQ(ref.at("ids").size(), strings.size());
  const json plain = ref.value("ids_plain", json::object());
  Mismatches bad(name + " (" + ref.at("source").get<std::string>() + ")");
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::string text = strings[i].get<std::string>();
    const auto want = ref["ids"][i].get<std::vector<int32_t>>();
    const std::vector<int32_t> ids = tok.encode(text);
    bad.check(ids, want, text, "ids");
    bad.check(tok.decode(want), ref["decoded"][i].get<std::string>(), text, "decoded");
    bad.check(tok.decode(want, /*skip_special=*/true), ref["decoded_skip"][i].get<std::string>(), text,
              "decoded_skip");
    if (ref.contains("ids_plain")) {
      const std::string key = std::to_string(i);
      const auto want_plain = plain.contains(key) ? plain[key].get<std::vector<int32_t>>() : want;
      bad.check(tok.encode(text, /*parse_special=*/false), want_plain, text, "ids_plain");
    }
  }
}

TEST(SentencePieceConformance, LlamaGgufMatchesLlamaCpp) {
  const Tokenizer tok = Tokenizer::from_gguf_file(spm_dir() / "spm-llama.gguf");
  EXPECT_EQ(tok.model(), TokenizerModel::sentencepiece);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_TRUE(tok.add_bos());
  expect_cases(tok, "llama-gguf");
}

TEST(SentencePieceConformance, GemmaGgufMatchesLlamaCpp) {
  const Tokenizer tok = Tokenizer::from_gguf_file(spm_dir() / "spm-gemma.gguf");
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 1);
  expect_cases(tok, "gemma-gguf");
}

TEST(SentencePieceConformance, LlamaTokenizerJsonMatchesHuggingFace) {
  const Tokenizer tok = Tokenizer::from_directory(spm_dir() / "spm-llama");
  EXPECT_EQ(tok.model(), TokenizerModel::sentencepiece);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_TRUE(tok.add_bos());
  expect_cases(tok, "llama-hf");
}

TEST(SentencePieceConformance, MetaspaceTokenizerJsonMatchesHuggingFace) {
  expect_cases(Tokenizer::from_json_file(spm_dir() / "spm-llama" / "tokenizer-metaspace.json"),
               "llama-metaspace-hf");
}

TEST(SentencePieceConformance, GemmaTokenizerJsonMatchesHuggingFace) {
  const Tokenizer tok = Tokenizer::from_directory(spm_dir() / "spm-gemma");
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 1);
  expect_cases(tok, "gemma-hf");
}

// The prefix rules where the references differ (the cases above hold the same strings):
// llama.cpp and HF's Prepend put "▁" before the text after a special token, Metaspace
// "first" does not; Gemma never does.
TEST(SentencePieceRules, PrefixAfterASpecialTokenDependsOnTheSource) {
  const Tokenizer gguf = Tokenizer::from_gguf_file(spm_dir() / "spm-llama.gguf");
  const Tokenizer meta = Tokenizer::from_json_file(spm_dir() / "spm-llama" / "tokenizer-metaspace.json");
  const Tokenizer gemma = Tokenizer::from_gguf_file(spm_dir() / "spm-gemma.gguf");
  const int32_t space = *gguf.token_id("\xe2\x96\x81");
  // "<|im_start|>" then "x": "▁x" for llama.cpp, "x" for Metaspace "first".
  const std::vector<int32_t> a = gguf.encode("<|im_start|>x");
  const std::vector<int32_t> b = meta.encode("<|im_start|>x");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(gguf.token_text(a[2]), "\xe2\x96\x81x");
  EXPECT_EQ(meta.token_text(b[2]), "x");
  // Gemma: no "▁" at the start either.
  const std::vector<int32_t> g = gemma.encode("x");
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(gemma.token_text(g[1]), "x");
  // Leading spaces: llama.cpp adds its "▁" to them, Metaspace does not.
  EXPECT_EQ(gguf.encode(" ")[1], *gguf.token_id("\xe2\x96\x81\xe2\x96\x81"));
  EXPECT_EQ(meta.encode(" ")[1], space);
}

// Characters outside the vocab are spelled with byte tokens, which decode to raw bytes:
// streaming (token_bytes) and decode give back invalid UTF-8 exactly.
TEST(SentencePieceRules, ByteFallbackRoundTripsAnyBytes) {
  for (const char* file : {"spm-llama.gguf", "spm-gemma.gguf"}) {
    const Tokenizer tok = Tokenizer::from_gguf_file(spm_dir() / file);
    const std::string text = "a\xff\xfe b\xe2\x82 \xf0\x9f\x99\x82\x80 \xed\xa0\x80 ꙮ";
    const std::vector<int32_t> ids = tok.encode(text);
    std::string streamed;
    for (size_t i = 1; i < ids.size(); ++i) streamed += tok.token_bytes(ids[i]);
    const bool prefix = std::string(file) == "spm-llama.gguf";
    EXPECT_EQ(streamed, (prefix ? " " : "") + text) << file;
    EXPECT_EQ(tok.decode(std::span(ids).subspan(1)), text) << file;
  }
}

TEST(SentencePieceRules, TokenBytesUnescapeSpacesAndBytes) {
  const Tokenizer tok = Tokenizer::from_directory(spm_dir() / "spm-llama");
  EXPECT_EQ(tok.token_bytes(*tok.token_id("<0x0A>")), "\n");
  EXPECT_EQ(tok.token_bytes(*tok.token_id("<0xFF>")), "\xff");
  EXPECT_EQ(tok.token_bytes(*tok.token_id("\xe2\x96\x81\xe2\x96\x81")), "  ");
  EXPECT_EQ(tok.token_bytes(1), "<s>");
  EXPECT_TRUE(tok.is_special(1));
  EXPECT_FALSE(tok.is_special(*tok.token_id("[[note]]")));
}

// A tiny random Llama carrying the SentencePiece tokenizer loads as a model.
TEST(SentencePieceModel, GgufLoadsThroughModelLoad) {
  const auto model = Model::load(spm_dir() / "spm-llama.gguf", {});
  EXPECT_EQ(model->tokenizer().model(), TokenizerModel::sentencepiece);
  EXPECT_EQ(model->tokenizer().vocab_size(), 1000);
  EXPECT_EQ(model->config().vocab_size, 1000);
  EXPECT_EQ(model->tokenizer().encode("Hello"), Tokenizer::from_gguf_file(spm_dir() / "spm-llama.gguf").encode("Hello"));
}

// spm-llama.gguf (through llama.cpp) and spm-llama/ (through transformers) are the same
// random model: Kestrel's logits after each prompt and its greedy tokens match both
// references, from either file. llama.cpp keeps its KV cache in f16, so its logits sit
// about 5e-3 from transformers'; the tolerances say so.
TEST(SentencePieceModel, LogitsMatchLlamaCppAndTransformers) {
  const std::vector<std::pair<std::string, float>> refs{{"logits-llamacpp", 2e-2f}, {"logits-hf", 1e-4f}};
  for (const fs::path& path : {spm_dir() / "spm-llama.gguf", spm_dir() / "spm-llama"}) {
    const auto model = Model::load(path, {});
    Session session(model, testing::f32_cache({.max_sequences = 1}));
    Decoder decoder(session);
    for (const auto& [name, tolerance] : refs) {
      const json ref = load(name);
      ASSERT_EQ(ref.at("prompts").size(), 3u);
      for (const json& p : ref.at("prompts")) {
        const auto ids = p.at("ids").get<std::vector<int32_t>>();
        const std::string text = p.at("text").get<std::string>();
        EXPECT_EQ(model->tokenizer().encode(text), ids) << path << ": " << text;
        const std::vector<float> logits = decoder.score(ids);
        const auto want = p.at("logits").get<std::vector<float>>();
        ASSERT_EQ(logits.size(), ids.size() * want.size());
        float worst = 0;
        for (size_t v = 0; v < want.size(); ++v)
          worst = std::max(worst, std::abs(logits[(ids.size() - 1) * want.size() + v] - want[v]));
        EXPECT_LE(worst, tolerance) << path << " vs " << name << ": " << text;
        GenerationRequest request;
        request.prompt_ids = ids;
        request.stop.max_new_tokens = 8;
        request.stop.stop_at_eos = false;
        EXPECT_EQ(decoder.generate(request).tokens, p.at("greedy").get<std::vector<int32_t>>())
            << path << " vs " << name << ": " << text;
      }
    }
  }
}

// The chat templates these GGUFs carry (Llama-2-chat, Gemma 2) render through the model,
// and encode_chat keeps one BOS: the template's own.
TEST(SentencePieceModel, ChatTemplatesRenderAndEncode) {
  const std::vector<ChatMessage> messages{{"user", "Hi"}};
  const auto llama = Model::load(spm_dir() / "spm-llama.gguf", {});
  const std::string llama_text = apply_chat_template(*llama, messages);
  EXPECT_EQ(llama_text, "<s>[INST] Hi [/INST]");
  const std::vector<int32_t> llama_ids = encode_chat(*llama, llama_text);
  EXPECT_EQ(llama_ids, llama->tokenizer().encode("[INST] Hi [/INST]"));  // <s> once, then "▁[INST]..."
  const auto gemma = Model::load(spm_dir() / "spm-gemma.gguf", {});
  const std::string gemma_text = apply_chat_template(*gemma, messages);
  EXPECT_EQ(gemma_text, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  const std::vector<int32_t> gemma_ids = encode_chat(*gemma, gemma_text);
  ASSERT_GE(gemma_ids.size(), 3u);
  EXPECT_EQ(gemma_ids[0], 2);  // <bos>
  EXPECT_EQ(gemma_ids[1], 4);  // <start_of_turn>
  EXPECT_EQ(gemma->tokenizer().decode(gemma_ids), gemma_text);
}

void expect_json_error(const json& root, const std::string& needle) {
  const fs::path path = testing::temp_dir("spm_json") / "tokenizer.json";
  testing::write_file(path, root.dump());
  try {
    Tokenizer::from_json_file(path);
    ADD_FAILURE() << "no error; expected one naming " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::unsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(SentencePieceErrors, UnknownComponentsAreNamed) {
  const json original = json::parse(testing::read_file(spm_dir() / "spm-llama" / "tokenizer.json"));
  json j = original;
  j["normalizer"]["normalizers"][0] = {{"type", "NFKC"}};
  expect_json_error(j, "normalizer step");
  j = original;
  j["decoder"]["decoders"].erase(1);
  expect_json_error(j, "decoder");
  j = original;
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_json_error(j, "pre_tokenizer");
  j = original;
  j["normalizer"] = nullptr;
  expect_json_error(j, "neither the normalizer nor the pre-tokenizer");
  j = original;
  j["model"]["fuse_unk"] = false;
  expect_json_error(j, "fuse_unk");
}

}  // namespace
}  // namespace kestrel
