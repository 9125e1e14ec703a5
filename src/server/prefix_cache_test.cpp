// PrefixCache without a model file: longest-prefix lookup, copies, LRU eviction under the budget.
#include "server/prefix_cache.h"

#include <gtest/gtest.h>

namespace mamba::server {
namespace {

runtime::SessionState state_with(float value, int64_t floats) {
  runtime::SessionState s;
  s.state.batch = 1;
  s.logits = Tensor::full({1, floats}, value);
  return s;
}

TEST(PrefixCache, LongestStoredPrefixWins) {
  PrefixCache cache(1 << 20);
  cache.insert(std::vector<int32_t>{1, 2}, state_with(2, 4));
  cache.insert(std::vector<int32_t>{1, 2, 3, 4}, state_with(4, 4));
  cache.insert(std::vector<int32_t>{1, 2, 9}, state_with(9, 4));
  auto hit = cache.lookup(std::vector<int32_t>{1, 2, 3, 4, 5});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->n_tokens, 4);
  EXPECT_EQ(hit->state.logits.f32()[0], 4.0f);
  hit->state.logits.f32()[0] = -1;  // a copy: the stored state is unchanged
  EXPECT_EQ(cache.lookup(std::vector<int32_t>{1, 2, 3, 4})->state.logits.f32()[0], 4.0f);
  EXPECT_EQ(cache.lookup(std::vector<int32_t>{1, 2, 3})->n_tokens, 2);
  EXPECT_FALSE(cache.lookup(std::vector<int32_t>{2, 1}));
  EXPECT_FALSE(cache.lookup(std::vector<int32_t>{1}));
  EXPECT_EQ(cache.entries(), 3);
}

TEST(PrefixCache, EvictsLeastRecentlyUsedUnderBudget) {
  // Each entry: 64 floats of logits (256 bytes) + 4 bytes per key token.
  PrefixCache cache(3 * 260);
  for (int32_t k = 0; k < 3; ++k)
    cache.insert(std::vector<int32_t>{k}, state_with(static_cast<float>(k), 64));
  EXPECT_EQ(cache.entries(), 3);
  EXPECT_TRUE(cache.lookup(std::vector<int32_t>{0}));  // 0 is now the most recent
  cache.insert(std::vector<int32_t>{3}, state_with(3, 64));
  EXPECT_EQ(cache.entries(), 3);
  EXPECT_LE(cache.bytes(), cache.budget_bytes());
  EXPECT_TRUE(cache.lookup(std::vector<int32_t>{0}));
  EXPECT_FALSE(cache.lookup(std::vector<int32_t>{1}));  // the least recently used went
  EXPECT_TRUE(cache.lookup(std::vector<int32_t>{3}));
  cache.insert(std::vector<int32_t>{4}, state_with(4, 1000));  // over the whole budget: not kept
  EXPECT_FALSE(cache.lookup(std::vector<int32_t>{4}));
  cache.clear();
  EXPECT_EQ(cache.bytes(), 0);
  EXPECT_EQ(cache.entries(), 0);
}

// A spill budget keeps what leaves the main budget (host memory for a device model's states; here
// both are host tensors, which exercises the bookkeeping): least recently used first out of each.
TEST(PrefixCache, SpillsBeyondItsBudgetAndHitsThere) {
  PrefixCache cache(2 * 260, 2 * 260);  // two entries in each tier
  for (int32_t k = 0; k < 5; ++k)
    cache.insert(std::vector<int32_t>{k}, state_with(static_cast<float>(k), 64));
  EXPECT_EQ(cache.entries(), 4);  // 4, 3 in the main tier; 2, 1 spilled; 0 dropped
  EXPECT_EQ(cache.bytes(), 2 * 260);
  EXPECT_EQ(cache.spilled_bytes(), 2 * 260);
  EXPECT_FALSE(cache.lookup(std::vector<int32_t>{0}));
  for (int32_t k = 1; k < 5; ++k) {
    auto hit = cache.lookup(std::vector<int32_t>{k, 9});
    ASSERT_TRUE(hit) << k;
    EXPECT_EQ(hit->n_tokens, 1);
    EXPECT_EQ(hit->state.logits.f32()[63], static_cast<float>(k));
  }
  // With 1 the most recently used spilled entry, a new spill (3, pushed out by 5) evicts 2.
  EXPECT_TRUE(cache.lookup(std::vector<int32_t>{1}));
  cache.insert(std::vector<int32_t>{5}, state_with(5, 64));
  EXPECT_FALSE(cache.lookup(std::vector<int32_t>{2}));
  EXPECT_TRUE(cache.lookup(std::vector<int32_t>{1}));
  EXPECT_TRUE(cache.lookup(std::vector<int32_t>{3}));
  EXPECT_EQ(cache.entries(), 4);
  // Over the main budget but within the spill budget: stored there directly.
  PrefixCache small(100, 1000);
  small.insert(std::vector<int32_t>{7}, state_with(7, 64));
  EXPECT_EQ(small.bytes(), 0);
  EXPECT_EQ(small.spilled_bytes(), 260);
  EXPECT_TRUE(small.lookup(std::vector<int32_t>{7}));
  small.insert(std::vector<int32_t>{8}, state_with(8, 1000));  // over both: not kept
  EXPECT_FALSE(small.lookup(std::vector<int32_t>{8}));
  cache.clear();
  EXPECT_EQ(cache.entries(), 0);
  EXPECT_EQ(cache.bytes() + cache.spilled_bytes(), 0);
  // Deferred eviction: inserts go over the budget until trim() moves the oldest out.
  cache.defer_eviction(true);
  for (int32_t k = 0; k < 4; ++k)
    cache.insert(std::vector<int32_t>{k}, state_with(static_cast<float>(k), 64));
  EXPECT_EQ(cache.bytes(), 4 * 260);
  EXPECT_EQ(cache.spilled_bytes(), 0);
  cache.trim();
  EXPECT_EQ(cache.bytes(), 2 * 260);
  EXPECT_EQ(cache.spilled_bytes(), 2 * 260);
  EXPECT_EQ(cache.lookup(std::vector<int32_t>{0})->state.logits.f32()[0], 0.0f);  // spilled, still there
}

}  // namespace
}  // namespace mamba::server
