// StopCriteria tests: EOS ids, stop strings found whole or split across tokens, the held-back
// tail while streaming, and streaming with search_from equal to checking the whole text.
#include "sampling/stop_criteria.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace mamba::sampling {
namespace {

TEST(StopCriteria, EosIds) {
  StopCriteria stop{.eos_ids = {0, 50256}};
  EXPECT_TRUE(stop.is_eos(0));
  EXPECT_TRUE(stop.is_eos(50256));
  EXPECT_FALSE(stop.is_eos(1));
  EXPECT_FALSE(StopCriteria{}.is_eos(0));
}

TEST(StopCriteria, NoStopStrings) {
  const StopCheck check = StopCriteria{}.check("hello");
  EXPECT_FALSE(check.stopped);
  EXPECT_EQ(check.text_end, 5u);
  EXPECT_EQ(check.held_back, 0u);
  EXPECT_EQ(check.stop_index, -1);
}

TEST(StopCriteria, StopStringInOneToken) {
  StopCriteria stop{.stop_strings = {"User:"}};
  const StopCheck check = stop.check("Hello\nUser: more");
  EXPECT_TRUE(check.stopped);
  EXPECT_EQ(check.text_end, 6u);  // "Hello\n" is shown, the stop string is not
  EXPECT_EQ(check.held_back, 0u);
  EXPECT_EQ(check.stop_index, 0);
}

TEST(StopCriteria, StopStringSplitAcrossTokens) {
  StopCriteria stop{.stop_strings = {"User:"}};
  std::string text = "Hello Us";
  StopCheck check = stop.check(text);
  EXPECT_FALSE(check.stopped);
  EXPECT_EQ(check.held_back, 2u);  // "Us" could begin "User:"
  EXPECT_EQ(check.text_end, 6u);
  text += "er";
  check = stop.check(text, check.text_end);
  EXPECT_FALSE(check.stopped);
  EXPECT_EQ(check.held_back, 4u);
  EXPECT_EQ(check.text_end, 6u);
  text += ": hi";
  check = stop.check(text, check.text_end);
  EXPECT_TRUE(check.stopped);
  EXPECT_EQ(text.substr(0, check.text_end), "Hello ");
}

TEST(StopCriteria, HeldBackTextIsReleasedWhenRuledOut) {
  StopCriteria stop{.stop_strings = {"User:"}};
  StopCheck check = stop.check("Hello Us");
  EXPECT_EQ(check.text_end, 6u);
  check = stop.check("Hello Usually", check.text_end);
  EXPECT_FALSE(check.stopped);
  EXPECT_EQ(check.held_back, 0u);
  EXPECT_EQ(check.text_end, 13u);
}

TEST(StopCriteria, EarliestOfSeveralAndLongestHeldPrefix) {
  StopCriteria stop{.stop_strings = {"", "END", "\n\n"}};
  StopCheck check = stop.check("a\n\nb END");
  EXPECT_TRUE(check.stopped);
  EXPECT_EQ(check.text_end, 1u);
  EXPECT_EQ(check.stop_index, 2);
  // Self-overlapping prefix: "aaa" ends with "aa", a prefix of "aab".
  StopCriteria overlap{.stop_strings = {"aab", "x"}};
  check = overlap.check("caaa");
  EXPECT_FALSE(check.stopped);
  EXPECT_EQ(check.held_back, 2u);
  check = overlap.check("caaab", check.text_end);
  EXPECT_TRUE(check.stopped);
  EXPECT_EQ(check.text_end, 2u);
}

TEST(StopCriteria, StreamingEqualsWholeText) {
  // Random text over a tiny alphabet fed in random pieces: the streamed output must equal the
  // text before the first stop string, never print part of a stop string, and stop on time.
  StopCriteria stop{.stop_strings = {"abba", "bbb", "ca"}};
  std::mt19937 rng(1);
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    std::string printed;
    StopCheck check;
    bool stopped = false;
    while (!stopped && text.size() < 40) {
      const int piece = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < piece; ++i) text += "abc"[rng() % 3];
      const size_t printed_end = check.text_end;
      check = stop.check(text, printed_end);
      ASSERT_GE(check.text_end, printed_end);
      printed += text.substr(printed_end, check.text_end - printed_end);
      stopped = check.stopped;
    }
    const StopCheck whole = stop.check(text);
    EXPECT_EQ(whole.stopped, stopped) << text;
    if (stopped)
      EXPECT_EQ(printed, text.substr(0, whole.text_end)) << text;
    else
      EXPECT_EQ(printed + text.substr(check.text_end), text) << text;
  }
}

}  // namespace
}  // namespace mamba::sampling
