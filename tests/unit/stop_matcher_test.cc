#include "decoding/stop_matcher.h"

#include <gtest/gtest.h>

namespace kestrel {
namespace {

// Feeds pieces one at a time and returns everything streamed (plus the final flush
// unless a stop string matched).
std::string stream(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) {
    out += m.push(p);
    if (m.matched()) return out;
  }
  return out + m.flush();
}

TEST(StopMatcher, PassesTextThroughWithoutStops) {
  StopMatcher m({});
  EXPECT_EQ(m.push("Hello"), "Hello");
  EXPECT_EQ(m.push(", world"), ", world");
  EXPECT_FALSE(m.matched());
}

TEST(StopMatcher, CatchesAStopStringSplitAcrossPieces) {
  StopMatcher m({"\n\nUser:"});
  std::string out = stream(m, {"Sure", ".\n", "\nUs", "er", ": more"});
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(out, "Sure.");
  EXPECT_EQ(m.text(), "Sure.");
}

TEST(StopMatcher, HoldsBackOnlyWhatCouldStartAStop) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("abcE"), "abc");  // "E" might start "END"
  EXPECT_EQ(m.push("x"), "Ex");      // it did not
  EXPECT_EQ(m.push("EN"), "");
  EXPECT_EQ(m.push("D tail"), "");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.text(), "abcEx");
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"bbb", "ab"});
  EXPECT_EQ(stream(m, {"xxa", "bbbb"}), "xx");
}

TEST(StopMatcher, FlushReleasesAHeldPrefix) {
  StopMatcher m({"###"});
  EXPECT_EQ(m.push("done #"), "done ");
  EXPECT_EQ(m.flush(), "#");
  EXPECT_FALSE(m.matched());
}

TEST(StopMatcher, NeverSplitsAUtf8Character) {
  StopMatcher m({});
  const std::string euro = "\xE2\x82\xAC";  // €
  // (strings built with append: g++ 12 -O3 misreports `"a" + std::string` under -Wrestrict)
  EXPECT_EQ(m.push(std::string("a").append(euro, 0, 1)), "a");
  EXPECT_EQ(m.push(euro.substr(1, 1)), "");
  const std::string last_and_b = std::string(euro.substr(2, 1)).append("b");
  EXPECT_EQ(m.push(last_and_b), std::string(euro).append("b"));
  EXPECT_EQ(incomplete_utf8_tail("\xF0\x9F\x99"), 3u);  // 3 of 4 bytes of an emoji
  EXPECT_EQ(incomplete_utf8_tail("ok"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("\xF0\x9F\x99\x82"), 0u);
}

}  // namespace
}  // namespace kestrel
