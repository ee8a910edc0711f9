// Byte-level BPE tokenizer: conformance with Hugging Face `tokenizers` (cases in the
// fixtures), lossless round trips on any bytes, and the errors bad files give.
#include "kestrel/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "kestrel/error.h"
#include "test_support.h"
#include "tokenizer/byte_level.h"

namespace kestrel {
namespace {

using nlohmann::json;
using testing::fixture_dir;
using testing::read_file;
using testing::temp_dir;
using testing::write_file;

struct Case {
  std::string text;
  std::vector<int32_t> ids;
  std::string decoded;
};

std::vector<Case> load_cases(const std::filesystem::path& path) {
  std::vector<Case> cases;
  for (const json& c : json::parse(read_file(path))) {
    cases.push_back({c.at("text").get<std::string>(), c.at("ids").get<std::vector<int32_t>>(),
                     c.at("decoded").get<std::string>()});
  }
  return cases;
}

// `s` as a JSON string literal, invalid UTF-8 shown as U+FFFD.
std::string printable(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::filesystem::path gpt2_dir() { return fixture_dir() / "tiny-gpt2"; }
std::filesystem::path llama3_dir() { return fixture_dir() / "tiny-llama3-tokenizer"; }

void expect_cases(const Tokenizer& tok, const std::vector<Case>& cases) {
  ASSERT_FALSE(cases.empty());
  for (const Case& c : cases) {
    EXPECT_EQ(tok.encode(c.text), c.ids) << "text: " << printable(c.text);
    EXPECT_EQ(tok.decode(c.ids), c.decoded) << "text: " << printable(c.text);
  }
}

// Runs `fn`, expecting an Error of `category` whose message contains `needle`.
template <typename Fn>
void expect_error(Fn&& fn, ErrorCategory category, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected one containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), category) << e.what();
    EXPECT_NE(e.message().find(needle), std::string::npos)
        << "message '" << e.message() << "' lacks '" << needle << "'";
  }
}

// ---- GPT-2 pre-tokenizer: tests/fixtures/tiny-gpt2 ------------------------------------

TEST(TokenizerGpt2, TokenizerJsonMatchesHuggingFace) {
  Tokenizer tok = Tokenizer::from_json_file(gpt2_dir() / "tokenizer.json");
  EXPECT_EQ(tok.vocab_size(), 1000);
  EXPECT_EQ(tok.pre_tokenizer(), PreTokenizer::gpt2);
  auto cases = load_cases(gpt2_dir() / "tokenizer_cases.json");
  expect_cases(tok, cases);
  for (const Case& c : cases) EXPECT_EQ(c.decoded, c.text);
}

TEST(TokenizerGpt2, VocabMergesMatchesHuggingFace) {
  Tokenizer tok =
      Tokenizer::from_vocab_merges(gpt2_dir() / "vocab.json", gpt2_dir() / "merges.txt");
  EXPECT_EQ(tok.vocab_size(), 1000);
  expect_cases(tok, load_cases(gpt2_dir() / "tokenizer_cases.json"));
}

TEST(TokenizerGpt2, FromDirectoryFallsBackToVocabMerges) {
  auto dir = temp_dir("tok-vocab-merges");
  for (const char* name : {"vocab.json", "merges.txt"}) {
    write_file(dir / name, read_file(gpt2_dir() / name));
  }
  Tokenizer tok = Tokenizer::from_directory(dir);
  expect_cases(tok, load_cases(gpt2_dir() / "tokenizer_cases.json"));
  EXPECT_TRUE(tok.is_special(0));
}

TEST(TokenizerGpt2, EndOfTextIsBosEosAndSpecial) {
  Tokenizer tok = Tokenizer::from_directory(gpt2_dir());
  ASSERT_TRUE(tok.eos_id().has_value());
  EXPECT_EQ(*tok.eos_id(), 0);
  EXPECT_EQ(tok.bos_id(), tok.eos_id());
  EXPECT_FALSE(tok.add_bos());
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_FALSE(tok.is_special(1));
  EXPECT_EQ(tok.token_id("<|endoftext|>"), 0);
  EXPECT_EQ(tok.token_bytes(0), "<|endoftext|>");
}

TEST(TokenizerGpt2, ParseSpecialAndSkipSpecial) {
  Tokenizer tok = Tokenizer::from_directory(gpt2_dir());
  const std::string text = "a<|endoftext|>b";
  std::vector<int32_t> parsed = tok.encode(text);
  EXPECT_NE(std::find(parsed.begin(), parsed.end(), 0), parsed.end());
  std::vector<int32_t> plain = tok.encode(text, /*parse_special=*/false);
  EXPECT_EQ(std::find(plain.begin(), plain.end(), 0), plain.end());
  EXPECT_EQ(tok.decode(plain), text);
  EXPECT_EQ(tok.decode(parsed), text);
  EXPECT_EQ(tok.decode(parsed, /*skip_special=*/true), "ab");
}

TEST(TokenizerGpt2, TokenBytesAreRawBytes) {
  Tokenizer tok = Tokenizer::from_directory(gpt2_dir());
  // "Ġ" is the byte-level symbol of the space; "Ã©" is the two bytes of "é".
  auto space = tok.token_id("\xC4\xA0");
  ASSERT_TRUE(space.has_value());
  EXPECT_EQ(tok.token_bytes(*space), " ");
  EXPECT_EQ(tok.token_text(*space), "\xC4\xA0");
  std::string bytes;
  for (int32_t id : tok.encode("é")) bytes += tok.token_bytes(id);
  EXPECT_EQ(bytes, "é");
}

// ---- Llama-3 pre-tokenizer: tests/fixtures/tiny-llama3-tokenizer ----------------------

TEST(TokenizerLlama3, MatchesHuggingFace) {
  Tokenizer tok = Tokenizer::from_json_file(llama3_dir() / "tokenizer.json");
  EXPECT_EQ(tok.pre_tokenizer(), PreTokenizer::llama3);
  EXPECT_EQ(tok.vocab_size(), 801);
  auto cases = load_cases(llama3_dir() / "tokenizer_cases.json");
  EXPECT_GE(cases.size(), 40u);
  expect_cases(tok, cases);
}

// ---- o200k pre-tokenizer (GPT-4o, gpt-oss): tests/fixtures/tiny-gpt4o-tokenizer ---------

// The same training text and cases as the Llama-3 tokenizer's, and the cases where the o200k
// regex splits its own way (capital runs, combining marks, slashes after punctuation).
TEST(TokenizerGpt4o, MatchesHuggingFace) {
  const auto dir = fixture_dir() / "tiny-gpt4o-tokenizer";
  Tokenizer tok = Tokenizer::from_directory(dir);
  EXPECT_EQ(tok.pre_tokenizer(), PreTokenizer::gpt4o);
  EXPECT_EQ(tok.vocab_size(), 801);
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.eos_id(), tok.token_id("<|return|>"));
  auto cases = load_cases(dir / "tokenizer_cases.json");
  EXPECT_GE(cases.size(), 55u);
  expect_cases(tok, cases);
}

TEST(TokenizerLlama3, BosFromTemplateEosFromConfig) {
  Tokenizer tok = Tokenizer::from_directory(llama3_dir());
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.bos_id(), tok.token_id("<|begin_of_text|>"));
  EXPECT_EQ(tok.eos_id(), tok.token_id("<|im_end|>"));
  std::vector<int32_t> ids = tok.encode("hi");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), *tok.bos_id());
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "hi");
}

TEST(TokenizerLlama3, NonSpecialAddedTokenAlwaysMatches) {
  Tokenizer tok = Tokenizer::from_directory(llama3_dir());
  auto note = tok.token_id("[[note]]");
  ASSERT_TRUE(note.has_value());
  EXPECT_EQ(*note, 800);
  EXPECT_FALSE(tok.is_special(*note));
  auto im_start = *tok.token_id("<|im_start|>");
  std::vector<int32_t> ids = tok.encode("<|im_start|>[[note]]", /*parse_special=*/false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *note), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), im_start), 0);
  // decode(skip_special) drops the BOS but keeps the non-special added token.
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "<|im_start|>[[note]]");
}

TEST(TokenizerLlama3, DigitsGroupInThrees) {
  Tokenizer tok = Tokenizer::from_directory(llama3_dir());
  std::vector<int32_t> ids = tok.encode("1234567", /*parse_special=*/false);
  std::vector<std::string> pieces;
  for (size_t i = 1; i < ids.size(); ++i) pieces.push_back(tok.token_bytes(ids[i]));
  std::string joined;
  for (auto& p : pieces) joined += p;
  EXPECT_EQ(joined, "1234567");
  // No token crosses the 3-digit group boundaries "123|456|7".
  size_t offset = 0;
  for (auto& p : pieces) {
    EXPECT_EQ(offset / 3, (offset + p.size() - 1) / 3) << "piece '" << p << "' crosses a group";
    offset += p.size();
  }
}

// ---- Specs built in code --------------------------------------------------------------

// The 256 byte symbols, then `extra` tokens.
TokenizerSpec byte_spec(std::vector<std::string> extra = {}) {
  TokenizerSpec spec;
  for (int b = 0; b < 256; ++b)
    spec.vocab.push_back(tokenizer::byte_to_symbol(static_cast<uint8_t>(b)));
  for (auto& e : extra) spec.vocab.push_back(std::move(e));
  return spec;
}

std::vector<std::string> token_strings(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(tok.token_bytes(id));
  return out;
}

TEST(TokenizerSpec, MergesApplyByRankLeftmostFirst) {
  TokenizerSpec spec = byte_spec({"ab", "bc", "abc"});
  spec.merges = {{"b", "c"}, {"a", "b"}, {"a", "bc"}};
  Tokenizer tok = Tokenizer::from_spec(spec);
  EXPECT_EQ(token_strings(tok, tok.encode("abc")), (std::vector<std::string>{"abc"}));
  EXPECT_EQ(token_strings(tok, tok.encode("abab")), (std::vector<std::string>{"ab", "ab"}));
  EXPECT_EQ(token_strings(tok, tok.encode("bcab")), (std::vector<std::string>{"bc", "ab"}));
}

TEST(TokenizerSpec, IgnoreMergesTakesWholeWords) {
  TokenizerSpec spec = byte_spec({"bc", "abc"});
  spec.merges = {{"b", "c"}};  // no merge builds "abc"
  Tokenizer merging = Tokenizer::from_spec(spec);
  EXPECT_EQ(token_strings(merging, merging.encode("abc")), (std::vector<std::string>{"a", "bc"}));
  spec.ignore_merges = true;
  Tokenizer whole = Tokenizer::from_spec(spec);
  EXPECT_EQ(token_strings(whole, whole.encode("abc")), (std::vector<std::string>{"abc"}));
}

TEST(TokenizerSpec, SmollmIsolatesEachDigit) {
  // Expected words from HF: Sequence[Digits(individual_digits), ByteLevel].pre_tokenize_str.
  TokenizerSpec spec = byte_spec({"12",
                                  "\xC4\xA0"
                                  "a"});
  spec.merges = {{"1", "2"}, {"\xC4\xA0", "a"}};
  Tokenizer gpt2 = Tokenizer::from_spec(spec);
  EXPECT_EQ(token_strings(gpt2, gpt2.encode(" a12a")), (std::vector<std::string>{" a", "12", "a"}));
  spec.pre_tokenizer = PreTokenizer::smollm;
  Tokenizer smollm = Tokenizer::from_spec(spec);
  EXPECT_EQ(token_strings(smollm, smollm.encode(" a12a")),
            (std::vector<std::string>{" a", "1", "2", "a"}));
  EXPECT_EQ(token_strings(smollm, smollm.encode(" a 1")),
            (std::vector<std::string>{" a", " ", "1"}));
}

TEST(TokenizerSpec, LongestSpecialTokenWins) {
  TokenizerSpec spec = byte_spec({"<|a|>", "<|a|><|b|>"});
  spec.special_ids = {256, 257};
  Tokenizer tok = Tokenizer::from_spec(spec);
  EXPECT_EQ(tok.encode("x<|a|><|b|>y<|a|>"), (std::vector<int32_t>{'x', 257, 'y', 256}));
}

TEST(TokenizerSpec, MissingByteTokenUsesUnkOrIsRefused) {
  TokenizerSpec spec = byte_spec({"<unk>"});
  spec.vocab['q'] = "<not-q>";  // byte 'q' has no token now
  Tokenizer refusing = Tokenizer::from_spec(spec);
  expect_error([&] { refusing.encode("abqb"); }, ErrorCategory::invalid_argument,
               "encode: byte 0x71 at offset 2 has no token");
  // The offset counts from the start of the text, across special tokens.
  spec.vocab.push_back("<|s|>");
  spec.special_ids = {257};
  Tokenizer with_special = Tokenizer::from_spec(spec);
  expect_error([&] { with_special.encode("a<|s|>bq"); }, ErrorCategory::invalid_argument,
               "byte 0x71 at offset 7");
  EXPECT_EQ(with_special.encode("a<|s|>b"), (std::vector<int32_t>{'a', 257, 'b'}));
  spec.unk_id = 256;
  Tokenizer unk = Tokenizer::from_spec(spec);
  EXPECT_EQ(unk.encode("aqb"), (std::vector<int32_t>{'a', 256, 'b'}));
}

TEST(TokenizerSpec, BadSpecsNameTheField) {
  TokenizerSpec spec = byte_spec();
  spec.merges = {{"a", "b"}, {"a", "zz"}};
  expect_error([&] { Tokenizer::from_spec(spec, "model.gguf"); }, ErrorCategory::format,
               "model.gguf: merges[0]: merged token 'ab' is not in the vocab");
  spec.vocab.push_back("ab");
  expect_error([&] { Tokenizer::from_spec(spec); }, ErrorCategory::format,
               "merges[1]: unknown token 'zz'");
  spec.merges.pop_back();
  spec.special_ids = {300};
  expect_error([&] { Tokenizer::from_spec(spec); }, ErrorCategory::format,
               "special_ids: token id 300 is out of range");
  spec.special_ids.clear();
  spec.add_bos = true;
  expect_error([&] { Tokenizer::from_spec(spec); }, ErrorCategory::format, "no bos token");
  expect_error([] { Tokenizer::from_spec(TokenizerSpec{}); }, ErrorCategory::format,
               "vocab is empty");
}

// ---- Round trips on arbitrary bytes ----------------------------------------------------

// Random strings mixing ASCII, whitespace, multi-byte UTF-8, fragments of it and bytes
// that are never valid UTF-8.
std::vector<std::string> random_byte_strings(uint64_t seed, int count) {
  static const std::vector<std::string> pieces = {"a",
                                                  "Z",
                                                  " ",
                                                  "  ",
                                                  "\n",
                                                  "\r\n",
                                                  "\t",
                                                  "'s",
                                                  "'LL",
                                                  "1",
                                                  "42",
                                                  "999999",
                                                  "é",
                                                  "ß",
                                                  "你",
                                                  "好",
                                                  "🙂",
                                                  "👨‍👩‍👧",
                                                  "\xE2\x80\x8D",
                                                  "\xC3",
                                                  "\xA9",
                                                  "\xF0\x9F",
                                                  "\x80",
                                                  "\xFF",
                                                  "\xFE",
                                                  "\xC0\xAF",
                                                  "\xED\xA0\x80",
                                                  "\xF4\x90\x80\x80",
                                                  "<|endoftext|>",
                                                  "<|im_start|>",
                                                  "[[note]]",
                                                  "<|",
                                                  "!",
                                                  "...",
                                                  "\x00",
                                                  "\x7F"};
  std::mt19937_64 rng(seed);
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    std::string s;
    int length = static_cast<int>(rng() % 40);
    bool raw = rng() % 3 == 0;  // a third are uniform random bytes
    for (int k = 0; k < length; ++k) {
      if (raw) {
        s.push_back(static_cast<char>(rng() & 0xFF));
      } else {
        s += pieces[rng() % pieces.size()];
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

TEST(TokenizerRoundTrip, AnyBytesSurviveEncodeDecode) {
  std::vector<Tokenizer> tokenizers;
  tokenizers.push_back(Tokenizer::from_directory(gpt2_dir()));
  tokenizers.push_back(Tokenizer::from_directory(llama3_dir()));
  TokenizerSpec smollm = byte_spec();
  smollm.pre_tokenizer = PreTokenizer::smollm;
  tokenizers.push_back(Tokenizer::from_spec(smollm));
  for (const Tokenizer& tok : tokenizers) {
    for (const std::string& s : random_byte_strings(7, 1500)) {
      for (bool parse_special : {true, false}) {
        std::vector<int32_t> ids = tok.encode(s, parse_special);
        std::string decoded = tok.decode(ids);
        if (tok.add_bos()) {
          ASSERT_FALSE(ids.empty());
          decoded = tok.decode(std::span(ids).subspan(1));
        }
        ASSERT_EQ(decoded, s) << "input " << printable(s);
      }
    }
  }
}

TEST(TokenizerRoundTrip, LongRunsStayFast) {
  Tokenizer tok = Tokenizer::from_directory(llama3_dir());
  for (std::string s :
       {std::string(200000, ' '), std::string(200000, 'x'), std::string(200000, '7'),
        std::string(100000, '!'), std::string(50000, '\n') + std::string(50000, '\xFF')}) {
    std::vector<int32_t> ids = tok.encode(s, false);
    EXPECT_EQ(tok.decode(std::span(ids).subspan(1)), s);
  }
}

TEST(TokenizerRoundTrip, EncodeIsThreadSafe) {
  Tokenizer tok = Tokenizer::from_directory(gpt2_dir());
  auto inputs = random_byte_strings(11, 200);
  std::vector<std::vector<int32_t>> expected;
  for (const auto& s : inputs) expected.push_back(tok.encode(s));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < inputs.size(); ++i) {
          if (tok.encode(inputs[i]) != expected[i]) ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

// ---- Other tokenizer.json forms (expected tokens from Hugging Face tokenizers 0.19.1) ------

// tiny-gpt2's tokenizer.json with `edit` applied, written to a fresh directory.
std::filesystem::path edited_gpt2(const std::string& name, const std::function<void(json&)>& edit) {
  json root = json::parse(read_file(gpt2_dir() / "tokenizer.json"));
  edit(root);
  auto dir = temp_dir(name);
  write_file(dir / "tokenizer.json", root.dump());
  return dir / "tokenizer.json";
}

TEST(TokenizerJsonForms, DigitsThenByteLevelIsSmollm) {
  auto path = edited_gpt2("tok-smollm", [](json& j) {
    j["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": true},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
         "use_regex": true}]})");
  });
  Tokenizer tok = Tokenizer::from_json_file(path);
  EXPECT_EQ(tok.pre_tokenizer(), PreTokenizer::smollm);
  EXPECT_EQ(token_strings(tok, tok.encode("12<|endoftext|>34")),
            (std::vector<std::string>{"1", "2", "<|endoftext|>", "3", "4"}));
}

TEST(TokenizerJsonForms, AddPrefixSpacePerSegment) {
  auto path =
      edited_gpt2("tok-prefix", [](json& j) { j["pre_tokenizer"]["add_prefix_space"] = true; });
  Tokenizer tok = Tokenizer::from_json_file(path);
  EXPECT_EQ(token_strings(tok, tok.encode("a<|endoftext|>b")),
            (std::vector<std::string>{" a", "<|endoftext|>", " b"}));
  EXPECT_EQ(token_strings(tok, tok.encode("<<|endoftext|>>")),
            (std::vector<std::string>{" <", "<|endoftext|>", " ", ">"}));
}

TEST(TokenizerJsonForms, TemplateProcessingAddsBosAndEos) {
  auto path = edited_gpt2("tok-template", [](json& j) {
    j["added_tokens"].push_back({{"id", 1000}, {"content", "<s>"}, {"special", true}});
    j["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
        "pair": [],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1000], "tokens": ["<s>"]},
                           "<|endoftext|>": {"id": "<|endoftext|>", "ids": [0],
                                             "tokens": ["<|endoftext|>"]}}})");
  });
  Tokenizer tok = Tokenizer::from_json_file(path);
  EXPECT_EQ(tok.vocab_size(), 1001);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.bos_id(), 1000);
  EXPECT_EQ(tok.eos_id(), 0);
  std::vector<int32_t> ids = tok.encode("a");
  EXPECT_EQ(ids, (std::vector<int32_t>{1000, *tok.token_id("a"), 0}));
  EXPECT_EQ(tok.decode(ids), "<s>a<|endoftext|>");
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "a");
}

TEST(TokenizerJsonForms, VocabMergesReadsTokenizerConfig) {
  auto dir = temp_dir("tok-vocab-merges-config");
  json vocab = json::parse(read_file(gpt2_dir() / "vocab.json"));
  vocab["<|im_end|>"] = 1000;
  write_file(dir / "vocab.json", vocab.dump());
  write_file(dir / "merges.txt", read_file(gpt2_dir() / "merges.txt"));
  write_file(dir / "tokenizer_config.json", R"({"eos_token": "<|im_end|>",
      "added_tokens_decoder": {"1000": {"content": "<|im_end|>", "special": true}}})");
  Tokenizer tok = Tokenizer::from_directory(dir);
  EXPECT_EQ(tok.eos_id(), 1000);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_TRUE(tok.is_special(1000));
  EXPECT_EQ(tok.encode("x<|im_end|>").back(), 1000);
}

// ---- Bad files ----------------------------------------------------------------------

TEST(TokenizerErrors, MissingFilesAreIoErrors) {
  auto dir = temp_dir("tok-empty");
  expect_error([&] { Tokenizer::from_directory(dir); }, ErrorCategory::io, dir.string());
  expect_error([&] { Tokenizer::from_json_file(dir / "tokenizer.json"); }, ErrorCategory::io,
               "tokenizer.json: no such file");
  expect_error([&] { Tokenizer::from_vocab_merges(gpt2_dir() / "vocab.json", dir / "merges.txt"); },
               ErrorCategory::io, "merges.txt");
}

TEST(TokenizerErrors, MalformedJson) {
  auto dir = temp_dir("tok-malformed");
  write_file(dir / "tokenizer.json", "{\"model\": {\"vocab\": {\"a\": 0,");
  expect_error([&] { Tokenizer::from_directory(dir); }, ErrorCategory::format,
               "tokenizer.json: malformed JSON");
  write_file(dir / "tokenizer.json", "[1, 2]");
  expect_error([&] { Tokenizer::from_directory(dir); }, ErrorCategory::format,
               "expected a JSON object");
}

TEST(TokenizerErrors, MissingOrWrongFields) {
  auto no_vocab = edited_gpt2("tok-no-vocab", [](json& j) { j["model"].erase("vocab"); });
  expect_error([&] { Tokenizer::from_json_file(no_vocab); }, ErrorCategory::format,
               "missing field model.vocab");
  auto no_model = edited_gpt2("tok-no-model", [](json& j) { j.erase("model"); });
  expect_error([&] { Tokenizer::from_json_file(no_model); }, ErrorCategory::format,
               "missing field model");
  auto bad_id = edited_gpt2("tok-bad-id", [](json& j) { j["model"]["vocab"]["a"] = "seven"; });
  expect_error([&] { Tokenizer::from_json_file(bad_id); }, ErrorCategory::format,
               "model.vocab['a']: expected a token id");
  auto word_piece = edited_gpt2("tok-wordpiece", [](json& j) { j["model"]["type"] = "WordPiece"; });
  expect_error([&] { Tokenizer::from_json_file(word_piece); }, ErrorCategory::unsupported,
               "model.type \"WordPiece\" is not supported");
}

TEST(TokenizerErrors, UnknownPreTokenizerIsUnsupported) {
  auto path = edited_gpt2("tok-metaspace", [](json& j) {
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
  });
  expect_error([&] { Tokenizer::from_json_file(path); }, ErrorCategory::unsupported,
               "tokenizer.json: pre_tokenizer {\"replacement\":\"_\",\"type\":\"Metaspace\"} is "
               "not supported");
  auto other_regex = edited_gpt2("tok-other-regex", [](json& j) {
    j["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})");
  });
  expect_error([&] { Tokenizer::from_json_file(other_regex); }, ErrorCategory::unsupported,
               "pre_tokenizer");
}

TEST(TokenizerErrors, MergeWithUnknownToken) {
  auto path =
      edited_gpt2("tok-bad-merge", [](json& j) { j["model"]["merges"][12] = "x\xC4\xA0y qq"; });
  expect_error([&] { Tokenizer::from_json_file(path); }, ErrorCategory::format,
               "tokenizer.json: model.merges[12]: unknown token 'x\xC4\xA0y'");
  auto dir = temp_dir("tok-bad-merges-txt");
  write_file(dir / "vocab.json", read_file(gpt2_dir() / "vocab.json"));
  write_file(dir / "merges.txt", "#version: 0.2\nh e\nzz top\n");
  expect_error([&] { Tokenizer::from_directory(dir); }, ErrorCategory::format,
               "merges.txt: line 3: unknown token 'zz'");
  write_file(dir / "merges.txt", "#version: 0.2\nhe\n");
  expect_error([&] { Tokenizer::from_directory(dir); }, ErrorCategory::format,
               "merges.txt: line 2: expected two tokens");
}

TEST(TokenizerErrors, DuplicateOrMissingIds) {
  auto dup = edited_gpt2("tok-dup-id", [](json& j) { j["model"]["vocab"]["a"] = 5; });
  expect_error([&] { Tokenizer::from_json_file(dup); }, ErrorCategory::format, "duplicate id 5");
  auto added = edited_gpt2("tok-dup-added", [](json& j) { j["added_tokens"][0]["id"] = 7; });
  expect_error([&] { Tokenizer::from_json_file(added); }, ErrorCategory::format,
               "added_tokens[0]: duplicate id 7");
}

TEST(TokenizerErrors, ConfigNamingUnknownToken) {
  auto dir = temp_dir("tok-bad-config");
  write_file(dir / "tokenizer.json", read_file(gpt2_dir() / "tokenizer.json"));
  write_file(dir / "tokenizer_config.json", R"({"eos_token": {"content": "</s>"}})");
  expect_error([&] { Tokenizer::from_directory(dir); }, ErrorCategory::format,
               "tokenizer_config.json: eos_token: token '</s>' is not in the vocab");
}

// Every field replaced by a value of every other JSON type: the loader either accepts the
// file or throws kestrel::Error naming tokenizer.json, never anything else.
TEST(TokenizerErrors, FieldsOfTheWrongTypeGiveErrors) {
  const json original = json::parse(read_file(llama3_dir() / "tokenizer.json"));
  const std::vector<std::string> pointers = {
      "/model",
      "/model/type",
      "/model/vocab",
      "/model/vocab/a",
      "/model/merges",
      "/model/merges/0",
      "/model/unk_token",
      "/model/ignore_merges",
      "/model/byte_fallback",
      "/added_tokens",
      "/added_tokens/0",
      "/added_tokens/0/id",
      "/added_tokens/0/content",
      "/added_tokens/0/special",
      "/normalizer",
      "/pre_tokenizer",
      "/pre_tokenizer/pretokenizers",
      "/pre_tokenizer/pretokenizers/0",
      "/pre_tokenizer/pretokenizers/0/pattern",
      "/pre_tokenizer/pretokenizers/0/pattern/Regex",
      "/pre_tokenizer/pretokenizers/1/use_regex",
      "/decoder",
      "/post_processor",
      "/post_processor/processors",
      "/post_processor/processors/1/single",
      "/post_processor/processors/1/single/0",
      "/post_processor/processors/1/special_tokens",
      "/post_processor/processors/1/special_tokens/<|begin_of_text|>/ids"};
  const std::vector<json> replacements = {
      nullptr, 7, -1, 2.5, "x", json::array(), json::object(), json::array({"a", 1})};
  auto dir = temp_dir("tok-wrong-types");
  int accepted = 0;
  for (const std::string& pointer : pointers) {
    ASSERT_TRUE(original.contains(json::json_pointer(pointer))) << pointer;
    for (const json& value : replacements) {
      json edited = original;
      edited[json::json_pointer(pointer)] = value;
      write_file(dir / "tokenizer.json", edited.dump());
      try {
        Tokenizer tok = Tokenizer::from_json_file(dir / "tokenizer.json");
        EXPECT_TRUE(tok.decode(tok.encode("Hi 12")).ends_with("Hi 12"));
        ++accepted;
      } catch (const Error& e) {
        EXPECT_NE(e.message().find("tokenizer.json"), std::string::npos) << e.what();
      } catch (const std::exception& e) {
        ADD_FAILURE() << pointer << " = " << value.dump() << ": " << e.what();
      }
    }
  }
  EXPECT_GT(accepted, 0);  // e.g. a null decoder or normalizer is fine
}

TEST(TokenizerErrors, OutOfRangeIds) {
  Tokenizer tok = Tokenizer::from_directory(gpt2_dir());
  std::vector<int32_t> ids = {5, 1000};
  expect_error([&] { tok.decode(ids); }, ErrorCategory::invalid_argument,
               "decode: token id 1000 is out of range (vocab size 1000)");
  std::vector<int32_t> negative = {-1};
  expect_error([&] { tok.decode(negative); }, ErrorCategory::invalid_argument, "token id -1");
  expect_error([&] { tok.token_bytes(4242); }, ErrorCategory::invalid_argument, "token id 4242");
  EXPECT_FALSE(tok.is_special(-3));
}

}  // namespace
}  // namespace kestrel
