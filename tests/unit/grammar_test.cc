// GBNF grammars (decoding/grammar.h): the parser's syntax and its errors, the matcher on
// whole strings, on strings cut at every byte (as tokens cut them, UTF-8 included), and the
// vocabulary trie against a per-token check.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <kestrel/error.h>
#include <kestrel/tokenizer.h>

#include "decoding/grammar.h"

namespace kestrel::grammar {
namespace {

std::shared_ptr<const Grammar> compile(std::string_view text) {
  return std::make_shared<const Grammar>(Grammar::parse(text));
}

bool matches(std::string_view grammar, std::string_view text) { return Matcher::matches(compile(grammar), text); }

std::string parse_error(std::string_view text) {
  try {
    Grammar::parse(text);
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
    return e.message();
  }
  ADD_FAILURE() << "no error for: " << text;
  return "";
}

TEST(GrammarParser, LiteralsAlternativesAndGroups) {
  const char* g = R"(
# a comment
root ::= greeting " " ( "world" | "there" )   # trailing comment
greeting ::= "hello" | "hi"
)";
  EXPECT_TRUE(matches(g, "hello world"));
  EXPECT_TRUE(matches(g, "hi there"));
  EXPECT_FALSE(matches(g, "hi"));
  EXPECT_FALSE(matches(g, "hello worlds"));
  EXPECT_FALSE(matches(g, "hey world"));
}

TEST(GrammarParser, Repetitions) {
  EXPECT_TRUE(matches(R"(root ::= "a"*)", ""));
  EXPECT_TRUE(matches(R"(root ::= "a"*)", "aaaa"));
  EXPECT_FALSE(matches(R"(root ::= "a"+)", ""));
  EXPECT_TRUE(matches(R"(root ::= "a"+ "b"?)", "aab"));
  EXPECT_FALSE(matches(R"(root ::= "a"+ "b"?)", "abb"));
  const char* counted = R"(root ::= [0-9]{2} "-" [0-9]{1,3} "-" "x"{2,} "-" "y"{,2})";
  EXPECT_TRUE(matches(counted, "12-1-xx-"));
  EXPECT_TRUE(matches(counted, "12-123-xxxxx-yy"));
  EXPECT_FALSE(matches(counted, "1-1-xx-"));
  EXPECT_FALSE(matches(counted, "12-1234-xx-"));
  EXPECT_FALSE(matches(counted, "12-1-x-"));
  EXPECT_FALSE(matches(counted, "12-1-xx-yyy"));
  EXPECT_TRUE(matches(R"(root ::= ("ab"){2})", "abab"));
  EXPECT_FALSE(matches(R"(root ::= "ab"{2})", "abb")) << "a repeated literal repeats as a whole";
  EXPECT_TRUE(matches(R"(root ::= "ab"{2})", "abab"));
}

TEST(GrammarParser, CharacterClassesAndEscapes) {
  const char* g = R"(root ::= [a-zA-Z_] [^0-9\n]* "\x41\u00e9\U0001F600\t\"\\")";
  EXPECT_TRUE(matches(g, "_bc!Aé😀\t\"\\"));
  EXPECT_FALSE(matches(g, "_b9Aé😀\t\"\\"));
  EXPECT_FALSE(matches(g, "9Aé😀\t\"\\"));
  EXPECT_TRUE(matches(R"(root ::= . . .)", "a€😀"));
  EXPECT_FALSE(matches(R"(root ::= . .)", "abc"));
  EXPECT_TRUE(matches(R"(root ::= [\]\-])", "]"));
  EXPECT_TRUE(matches(R"(root ::= [\]\-])", "-"));
  EXPECT_TRUE(matches("root ::= [α-ω]+", "λόγος") == false) << "ό is outside α-ω";
  EXPECT_TRUE(matches("root ::= [α-ω]+", "λογος"));
}

TEST(GrammarParser, RulesSpanLinesInsideGroupsAndAfterBars) {
  const char* g = "root ::= (\n  \"a\"\n  \"b\"\n) |\n  \"c\"\n";
  EXPECT_TRUE(matches(g, "ab"));
  EXPECT_TRUE(matches(g, "c"));
}

// The rules the parser makes for groups and repetitions never take a name the text defines
// later (found by fuzzing: a JSON Schema property "2" of the root gave a rule root-2 beside
// the root's second group).
TEST(GrammarParser, GeneratedRulesNeverTakeANameTheTextDefines) {
  const std::string g = "root ::= (\"a\")* (\"b\" | \"c\")+ root-1 root-2 root-3\n"
                        "root-1 ::= \"x\"\nroot-2 ::= \"y\"\nroot-3 ::= (\"z\")?";
  EXPECT_TRUE(matches(g, "aabcxyz"));
  EXPECT_TRUE(matches(g, "bxy"));
  EXPECT_FALSE(matches(g, "axyz"));
}

TEST(GrammarParser, ErrorsNameLineColumnAndWhatWasExpected) {
  EXPECT_EQ(parse_error("root ::= \"a\"\nfoo ::= \"b"),
            "grammar: line 2, column 11: expected '\"' to close the string literal, found the end of the grammar");
  EXPECT_EQ(parse_error("root = \"a\""), "grammar: line 1, column 6: expected '::=' after rule name 'root', found '='");
  EXPECT_EQ(parse_error("root ::= ( \"a\" "), "grammar: line 1, column 16: expected ')' to close the group, found the end of the grammar");
  EXPECT_EQ(parse_error("root ::= [a-z"), "grammar: line 1, column 14: expected ']' to close the character class, found the end of the grammar");
  EXPECT_EQ(parse_error("root ::= \"a\" )"), "grammar: line 1, column 14: expected the end of the line after rule 'root', found ')'");
  EXPECT_EQ(parse_error("root ::= * \"a\""), "grammar: line 1, column 10: expected an item before '*'");
  EXPECT_EQ(parse_error("root ::= \"\\q\""), "grammar: line 1, column 11: unknown escape '\\q'");
  EXPECT_EQ(parse_error("root ::= \"\\x4\""), "grammar: line 1, column 14: expected 2 hex digits after '\\x', found '\"'");
  EXPECT_EQ(parse_error("root ::= \"a\"{3,1}"), "grammar: line 1, column 18: repetition {3,1} has max < min");
  EXPECT_EQ(parse_error("root ::= \"a\"\nroot ::= \"b\""), "grammar: line 2, column 1: rule 'root' is defined twice");
  EXPECT_EQ(parse_error("a ::= \"a\""), "grammar: no rule named root (the start symbol)");
  EXPECT_EQ(parse_error("root ::= \"a\" value\n"), "grammar: rule 'value' is used (line 1, column 14) but never defined");
}

TEST(GrammarParser, LeftRecursionIsRefusedByName) {
  EXPECT_EQ(parse_error("root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]"),
            "grammar: left recursion in rule 'expr': it can reach itself before matching a character");
  EXPECT_THAT(parse_error("root ::= a\na ::= b? a \"x\"\nb ::= \"b\""), testing::HasSubstr("left recursion in rule 'a'"));
  EXPECT_THAT(parse_error("root ::= (\"a\"?)*"), testing::HasSubstr("in rule 'root'"));
  // Right recursion is fine.
  EXPECT_TRUE(matches("root ::= \"(\" root \")\" | \"\"", "((()))"));
  EXPECT_FALSE(matches("root ::= \"(\" root \")\" | \"\"", "(()"));
}

TEST(GrammarMatcher, PathologicalGrammarsAreRefusedNotCrashed) {
  // Nested optional repetitions of something that may be empty: a long chain of rules
  // entered before any character, and a parse for every way to split the text.
  const auto deep = compile(R"(root ::= ("a"?){0,5000} "b")");
  try {
    EXPECT_TRUE(Matcher::matches(deep, "aab"));
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::unsupported);
    EXPECT_THAT(e.message(), testing::HasSubstr("grammar: "));
  }
  const std::string long_chain = [] {
    std::string g = "root ::= r0\n";
    for (int i = 0; i < 3000; ++i) {
      g += 'r';
      g += std::to_string(i);
      g += " ::= r";
      g += std::to_string(i + 1);
      g += '\n';
    }
    g += "r3000 ::= \"x\"\n";
    return g;
  }();
  EXPECT_THROW(Matcher(compile(long_chain)), Error);
  std::string nested = "root ::= ";
  nested.append(300, '(');
  nested += "\"a\"";
  nested.append(300, ')');
  EXPECT_THAT(parse_error(nested),
              testing::HasSubstr("nested more than 200 deep"));
}

TEST(GrammarMatcher, EndAndMustEnd) {
  Matcher m(compile(R"(root ::= "ab" "c"?)"));
  EXPECT_FALSE(m.can_end());
  EXPECT_TRUE(m.allows("a"));
  EXPECT_TRUE(m.allows("abc"));
  EXPECT_FALSE(m.allows("b"));
  EXPECT_FALSE(m.allows("")) << "an empty token makes no progress";
  EXPECT_TRUE(m.accept("ab"));
  EXPECT_TRUE(m.can_end());
  EXPECT_FALSE(m.must_end());
  EXPECT_FALSE(m.accept("d"));
  EXPECT_TRUE(m.can_end()) << "a refused accept leaves the state as it was";
  EXPECT_TRUE(m.accept("c"));
  EXPECT_TRUE(m.must_end());
  EXPECT_FALSE(m.allows("c"));
}

TEST(GrammarMatcher, TokensMayCutUtf8Characters) {
  const auto g = compile(R"(root ::= "é" [α-ω] "😀")");
  const std::string text = "éλ😀";
  // Every way of cutting the text in two tokens gives the same answer.
  for (size_t cut = 1; cut < text.size(); ++cut) {
    Matcher m(g);
    ASSERT_TRUE(m.accept(text.substr(0, cut))) << cut;
    EXPECT_FALSE(m.can_end());
    ASSERT_TRUE(m.accept(text.substr(cut))) << cut;
    EXPECT_TRUE(m.can_end()) << cut;
  }
  Matcher m(g);
  EXPECT_TRUE(m.allows("\xC3")) << "the first byte of é";
  EXPECT_FALSE(m.allows("\xC4")) << "a first byte no completion of which is é";
  EXPECT_FALSE(m.allows("\xA9")) << "a stray continuation byte";
  ASSERT_TRUE(m.accept("é"));
  EXPECT_TRUE(m.allows("\xCE")) << "α-ω start with 0xCE or 0xCF";
  EXPECT_TRUE(m.allows("\xCF"));
  EXPECT_FALSE(m.allows("\xD0"));
  EXPECT_FALSE(m.allows("\xC0\x80")) << "overlong";
  EXPECT_FALSE(matches(R"(root ::= [^a])", "\xED\xA0\x80")) << "a surrogate is not UTF-8";
}

TEST(GrammarMatcher, NegatedClassesIntersectPartialRanges) {
  CharClass cls{{{0x00, 0x7F}}, true};  // anything but ASCII
  EXPECT_FALSE(cls.intersects(0x00, 0x7F));
  EXPECT_TRUE(cls.intersects(0x70, 0x80));
  CharClass two{{{0x80, 0x8F}, {0x91, 0xFF}}, true};
  EXPECT_TRUE(two.intersects(0x80, 0xFF));  // 0x90
  EXPECT_FALSE(two.intersects(0x80, 0x8F));
}

TEST(GrammarMatcher, AmbiguousGrammarsKeepEveryParse) {
  // "a" can be the start of either alternative: both stacks live until the text decides.
  const auto g = compile(R"(root ::= "a" "b" | "a" "c" | [a-z]+)");
  EXPECT_TRUE(Matcher::matches(g, "ab"));
  EXPECT_TRUE(Matcher::matches(g, "ac"));
  EXPECT_TRUE(Matcher::matches(g, "abz"));
  EXPECT_FALSE(Matcher::matches(g, "a1"));
}

}  // namespace
}  // namespace kestrel::grammar
