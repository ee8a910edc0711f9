// Constrained decoding (GenerationRequest.constraint) end to end: on the tiny GPT-2 fixture
// and on the default model (SmolLM2-135M-Instruct, skipped when absent), greedy and sampled
// with several seeds, every output is a sentence of its grammar (nlohmann::json parses the
// JSON ones); a grammar that admits everything leaves the tokens as they were; a grammar
// can force text the model would not write; the vocabulary trie's mask equals a per-token
// check; invalid constraints fail before any work starts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>

#include "decoding/constraint.h"
#include "decoding/grammar.h"
#include "decoding/json_schema.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;

std::shared_ptr<const Model> tiny_model() {
  static std::shared_ptr<const Model> model = Model::load(fixture_dir() / "tiny-gpt2");
  return model;
}

std::shared_ptr<const grammar::Grammar> compile(const std::string& gbnf) {
  return std::make_shared<const grammar::Grammar>(grammar::Grammar::parse(gbnf));
}

// A bounded JSON object: every sentence is short, so the grammar ends it.
const char* kPointSchema = R"({
  "type": "object",
  "properties": {
    "x": {"type": "integer"},
    "label": {"enum": ["red", "green", "blue"]},
    "ok": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2}
  },
  "required": ["x", "label", "ok"]
})";

void expect_point(const std::string& text, const std::string& what) {
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(text)) << what << ": " << text;
  ASSERT_TRUE(j.is_object()) << what;
  EXPECT_TRUE(j["x"].is_number_integer()) << what << ": " << text;
  EXPECT_TRUE(j["label"] == "red" || j["label"] == "green" || j["label"] == "blue") << what << ": " << text;
  EXPECT_TRUE(j["ok"].is_boolean()) << what << ": " << text;
}

GenerationRequest point_request(const std::string& prompt, float temperature, uint64_t seed) {
  GenerationRequest r;
  r.prompt = prompt;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.stop.max_new_tokens = 100;
  r.constraint.json_schema = kPointSchema;
  return r;
}

class TinyModels : public ::testing::TestWithParam<const char*> {};

TEST_P(TinyModels, WriteSchemaJsonGreedyAndSampled) {
  Session session(Model::load(fixture_dir() / GetParam()), {.max_sequences = 3});
  Decoder decoder(session);
  std::vector<GenerationRequest> requests;
  for (float temperature : {0.0f, 0.8f, 1.5f})
    for (uint64_t seed : {1, 2, 3}) {
      if (temperature == 0.0f && seed > 1) continue;
      GenerationRequest r = point_request("Hello", temperature, seed);
      if (seed == 3) {
        r.sampling.top_k = 20;
        r.sampling.top_p = 0.9f;
        r.sampling.repetition_penalty = 1.3f;
      }
      requests.push_back(r);
    }
  // Streamed pieces add up to each text.
  std::vector<std::string> streamed(requests.size());
  const auto results = decoder.generate(requests, [&](const StreamEvent& e) {
    streamed[e.request] += e.text;
    return true;
  });
  for (size_t i = 0; i < results.size(); ++i) {
    const std::string what = std::string(GetParam()) + " request " + std::to_string(i);
    EXPECT_EQ(results[i].finish, FinishReason::stop_token) << what << ": " << results[i].text;
    expect_point(results[i].text, what);
    EXPECT_EQ(streamed[i], results[i].text) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TinyModels, ::testing::Values("tiny-gpt2", "tiny-llama"),
                         [](const auto& info) { return std::string(info.param) == "tiny-gpt2" ? "gpt2" : "llama"; });

TEST(GrammarDecoding, ParallelSamplesEachKeepTheirOwnGrammarState) {
  Session session(tiny_model(), {.max_sequences = 4});
  Decoder decoder(session);
  GenerationRequest r = point_request("A point:", 1.0f, 9);
  r.num_return_sequences = 4;
  const GenerationResult result = decoder.generate(r);
  ASSERT_EQ(result.sequences.size(), 4u);
  std::set<std::string> distinct;
  for (size_t j = 0; j < result.sequences.size(); ++j) {
    expect_point(result.sequences[j].text, "sample " + std::to_string(j));
    distinct.insert(result.sequences[j].text);
  }
  EXPECT_GE(distinct.size(), 2u);
}

TEST(GrammarDecoding, AGrammarAdmittingEverythingLeavesTokensUnchanged) {
  // `root ::= .*` admits any text. The random tiny model soon writes a special token or
  // bytes that are not UTF-8, which no grammar admits: up to there the constrained tokens
  // must be the plain ones, token for token (and the first refused one is redrawn).
  Session session(tiny_model());
  Decoder decoder(session);
  const Tokenizer& tok = tiny_model()->tokenizer();
  const auto any_text = compile("root ::= .*");
  size_t compared = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed)
    for (float temperature : {0.0f, 1.0f}) {
      GenerationRequest r;
      r.prompt = seed % 2 ? "The river" : "12 apples";
      r.sampling.temperature = temperature;
      r.sampling.top_k = seed % 4 == 1 ? 0 : 50;
      r.sampling.seed = seed;
      r.stop.max_new_tokens = 16;
      r.stop.stop_at_eos = false;
      const GenerationResult plain = decoder.generate(r);
      grammar::Matcher m(any_text);
      size_t admitted = 0;
      while (admitted < plain.tokens.size() && !tok.is_special(plain.tokens[admitted]) &&
             m.accept(tok.token_bytes(plain.tokens[admitted])))
        ++admitted;
      r.constraint.grammar = "root ::= .*";
      const GenerationResult constrained = decoder.generate(r);
      ASSERT_GE(constrained.tokens.size(), admitted);
      EXPECT_EQ(std::vector<int32_t>(constrained.tokens.begin(), constrained.tokens.begin() + admitted),
                std::vector<int32_t>(plain.tokens.begin(), plain.tokens.begin() + admitted))
          << "seed " << seed << " temperature " << temperature;
      if (admitted < plain.tokens.size() && admitted < constrained.tokens.size()) {
        EXPECT_NE(constrained.tokens[admitted], plain.tokens[admitted]) << "a refused token is redrawn";
      }
      EXPECT_TRUE(grammar::Matcher::matches(any_text, tok.decode(constrained.tokens)) ||
                  !grammar::Matcher::matches(any_text, tok.decode(constrained.tokens) + "a"))
          << "the constrained text is admitted (or a prefix cut inside a character)";
      compared += admitted;
    }
  EXPECT_GE(compared, 40u) << "too few tokens before the first one no grammar admits";
}

TEST(GrammarDecoding, AGrammarForcesTextTheModelWouldNotWrite) {
  Session session(tiny_model());
  Decoder decoder(session);
  GenerationRequest r;
  r.prompt = "Hello";
  r.stop.max_new_tokens = 30;
  const GenerationResult plain = decoder.generate(r);
  r.constraint.grammar = R"(root ::= " The answer is " [0-9] "." )";
  const GenerationResult forced = decoder.generate(r);
  EXPECT_THAT(forced.text, ::testing::MatchesRegex(" The answer is [0-9]\\."));
  EXPECT_NE(plain.text.substr(0, 15), " The answer is ");
  EXPECT_EQ(forced.finish, FinishReason::stop_token) << "the grammar is complete: nothing more can come";
  EXPECT_NE(forced.tokens.back(), 0) << "no EOS appended when the grammar ends the text";
}

TEST(GrammarDecoding, EosOnlyWhereTheGrammarCanEnd) {
  // tiny-gpt2's EOS is id 0; a grammar of one or more letters must write at least one.
  Session session(tiny_model());
  Decoder decoder(session);
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    GenerationRequest r;
    r.prompt = "x";
    r.sampling.temperature = 1.5f;
    r.sampling.seed = seed;
    r.stop.max_new_tokens = 20;
    r.stop.stop_token_ids = {5};
    r.constraint.grammar = R"(root ::= [a-z]{1,3})";
    const GenerationResult result = decoder.generate(r);
    EXPECT_TRUE(grammar::Matcher::matches(compile(r.constraint.grammar), result.text)) << result.text;
    EXPECT_EQ(result.finish, FinishReason::stop_token);
  }
}

TEST(GrammarDecoding, InvalidConstraintsFailBeforeAnyWork) {
  Session session(tiny_model());
  Decoder decoder(session);
  int streamed = 0;
  auto count = [&](const StreamEvent&) { return ++streamed > 0; };
  auto message = [&](const std::vector<GenerationRequest>& rs) -> std::string {
    try {
      decoder.generate(rs, count);
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
      return e.message();
    }
    return "no error";
  };
  GenerationRequest ok;
  ok.prompt = "Hi";
  ok.stop.max_new_tokens = 4;
  GenerationRequest bad = ok;
  bad.constraint.grammar = "root ::= \"a\" | ";
  bad.constraint.grammar = "root ::= ( \"a\"";
  EXPECT_EQ(message({ok, bad}),
            "request 1: ConstraintOptions.grammar: grammar: line 1, column 15: expected ')' to close the group, found the "
            "end of the grammar");
  bad.constraint.grammar = "root ::= [a-z]";
  bad.constraint.json_schema = "{}";
  EXPECT_THAT(message({bad}), ::testing::HasSubstr("ConstraintOptions.grammar and ConstraintOptions.json_schema are both set"));
  bad.constraint.grammar.clear();
  bad.constraint.json_schema = R"({"type": "string", "pattern": "a+"})";
  EXPECT_THAT(message({bad}), ::testing::HasSubstr("request 0: ConstraintOptions.json_schema: JSON schema at #: keyword 'pattern'"));
  bad.constraint.json_schema = "{}";
  bad.beam.num_beams = 2;
  EXPECT_THAT(message({bad}), ::testing::HasSubstr("ConstraintOptions.json_schema does not combine with beam search"));
  bad.beam.num_beams = 1;
  bad.speculative.method = SpeculativeMethod::prompt_lookup;
  EXPECT_THAT(message({bad}), ::testing::HasSubstr("does not combine with speculative decoding"));
  EXPECT_EQ(streamed, 0);
}

// The trie's mask against a per-token check, in several grammar states, on a vocabulary.
void expect_trie_matches_per_token_check(const Tokenizer& tok, const std::string& gbnf,
                                         const std::vector<std::string>& prefixes) {
  const auto g = compile(gbnf);
  const auto trie = grammar::vocabulary_trie(tok);
  for (const std::string& prefix : prefixes) {
    grammar::Matcher m(g);
    ASSERT_TRUE(prefix.empty() || m.accept(prefix)) << prefix;
    std::vector<int32_t> fast, slow;
    trie->allowed_tokens(m, fast);
    for (int32_t t = 0; t < tok.vocab_size(); ++t)
      if (!tok.is_special(t) && m.allows(tok.token_bytes(t))) slow.push_back(t);
    EXPECT_EQ(fast, slow) << gbnf << " after '" << prefix << "'";
    EXPECT_FALSE(fast.empty());
  }
}

TEST(GrammarDecoding, TrieMaskEqualsAPerTokenCheckOnTinyVocab) {
  const Tokenizer& tok = tiny_model()->tokenizer();
  const std::string json = json_schema_to_grammar(kPointSchema);
  expect_trie_matches_per_token_check(tok, json, {"", "{", "{\"x\": 1", "{\"x\": 12, \"label\": \"gr", "{\"x\": 1, \"label\": \"red\", \"ok\": true"});
  expect_trie_matches_per_token_check(tok, "root ::= [^a-m]* \"é\"", {"", "xyz", "\xC3"});
}

// --- the default model ----------------------------------------------------------------------

const std::filesystem::path kModelPath =
    std::filesystem::path(KESTREL_SOURCE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";

class GrammarSmolLM2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(kModelPath)) model_ = Model::load(kModelPath);
  }
  static void TearDownTestSuite() { model_.reset(); }
  void SetUp() override {
    if (!model_) GTEST_SKIP() << kModelPath << " is absent: run scripts/fetch-default-model.sh (scripts/test.sh does)";
  }
  GenerationRequest chat(const std::string& user) const {
    GenerationRequest r;
    const std::vector<ChatMessage> messages = {{"user", user}};
    r.prompt_ids = encode_chat(*model_, apply_chat_template(*model_, messages));
    r.stop.max_new_tokens = 80;
    return r;
  }
  static std::shared_ptr<const Model> model_;
};
std::shared_ptr<const Model> GrammarSmolLM2::model_;

TEST_F(GrammarSmolLM2, EveryOutputIsSchemaJsonGreedyAndSampled) {
  Session session(model_, {.max_sequences = 4, .max_sequence_tokens = 256});
  Decoder decoder(session);
  std::vector<GenerationRequest> requests;
  for (uint64_t seed : {0, 1, 2, 3}) {
    GenerationRequest r = chat("Describe a point as JSON with x, a color label and ok.");
    r.constraint.json_schema = kPointSchema;
    r.sampling.temperature = seed == 0 ? 0.0f : 0.9f;
    r.sampling.top_p = seed == 2 ? 0.9f : 1.0f;
    r.sampling.seed = seed;
    requests.push_back(r);
  }
  const auto results = decoder.generate(requests);
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].finish, FinishReason::stop_token) << i << ": " << results[i].text;
    expect_point(results[i].text, "request " + std::to_string(i));
  }
}

TEST_F(GrammarSmolLM2, AnyJsonValueAndAGrammarAdmittingEverything) {
  Session session(model_, {.max_sequences = 2, .max_sequence_tokens = 256});
  Decoder decoder(session);
  GenerationRequest r = chat("List three fruits.");
  r.stop.max_new_tokens = 24;
  GenerationRequest any = r;
  any.constraint.grammar = "root ::= .*";
  const auto both = decoder.generate(std::vector<GenerationRequest>{r, any});  // batching changes no token
  EXPECT_EQ(both[1].tokens, both[0].tokens) << both[0].text;

  r.constraint.grammar.clear();
  r.constraint.json_schema = R"({"type": "object", "properties": {"fruits": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}}, "required": ["fruits"]})";
  r.stop.max_new_tokens = 80;
  const GenerationResult json = decoder.generate(r);
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(json.text)) << json.text;
  EXPECT_TRUE(j["fruits"].is_array()) << json.text;
}

TEST_F(GrammarSmolLM2, TrieMaskEqualsAPerTokenCheck) {
  const Tokenizer& tok = model_->tokenizer();
  expect_trie_matches_per_token_check(tok, json_schema_to_grammar(kPointSchema),
                                      {"", "{\"x\": -3", "{\"x\": 1, \"label\": \"", "{\"x\": 1, \"label\": \"red\", \"ok\": f"});
  expect_trie_matches_per_token_check(tok, "root ::= [^\"]* \"你好\" [0-9]+", {"", "ab", "\xE4", "你好"});
}

}  // namespace
}  // namespace kestrel
