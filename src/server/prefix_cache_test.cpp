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

}  // namespace
}  // namespace mamba::server
