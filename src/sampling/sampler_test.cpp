// Sampler tests: every filter on small hand-computed distributions, their order, penalties'
// exact effect, greedy paths, seeding, padded vocabularies and empirical draw frequencies.
#include "sampling/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"

namespace mamba::sampling {
namespace {

constexpr float kTol = 1e-5f;

std::vector<float> log_of(const std::vector<float>& probs) {
  std::vector<float> logits;
  for (float p : probs) logits.push_back(std::log(p));
  return logits;
}

std::vector<float> softmax(const std::vector<float>& logits) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<float> probs;
  double sum = 0.0;
  for (float x : logits) sum += std::exp(x - max_logit);
  for (float x : logits) probs.push_back(static_cast<float>(std::exp(x - max_logit) / sum));
  return probs;
}

void expect_probs(const std::vector<float>& got, const std::vector<float>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], kTol) << "token " << i;
}

std::vector<float> probs_with(const SamplingParams& params, const std::vector<float>& logits,
                              std::vector<int32_t> history = {}) {
  Sampler sampler(params, static_cast<int32_t>(logits.size()));
  return sampler.probabilities(logits.data(), history);
}

// The textbook distribution of the brief: ln[0.5, 0.3, 0.15, 0.05].
const std::vector<float> kBase = {0.5f, 0.3f, 0.15f, 0.05f};

TEST(Sampler, NoFilterIsSoftmax) {
  expect_probs(probs_with({}, log_of(kBase)), kBase);
}

TEST(Sampler, TopPKeepsSmallestSetReachingMass) {
  const auto logits = log_of(kBase);
  expect_probs(probs_with({.top_p = 0.8f}, logits), {0.625f, 0.375f, 0.0f, 0.0f});
  expect_probs(probs_with({.top_p = 0.81f}, logits), {0.5f / 0.95f, 0.3f / 0.95f, 0.15f / 0.95f, 0.0f});
  expect_probs(probs_with({.top_p = 0.5f}, logits), {1.0f, 0.0f, 0.0f, 0.0f});
  expect_probs(probs_with({.top_p = 0.0f}, logits), {1.0f, 0.0f, 0.0f, 0.0f});  // top token kept
  expect_probs(probs_with({.top_p = 1.0f}, logits), kBase);
  // Order of ids does not matter: the same distribution shuffled.
  expect_probs(probs_with({.top_p = 0.8f}, log_of({0.15f, 0.05f, 0.3f, 0.5f})), {0.0f, 0.0f, 0.375f, 0.625f});
}

TEST(Sampler, TopPMatchesFullSortOnLargeVocab) {
  // More candidates than the first sorted block (256), so the growing prefix sort is exercised.
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<float> logits(5000);
  for (float& x : logits) x = normal(rng);
  for (float top_p : {0.05f, 0.3f, 0.9f}) {
    const auto probs = probs_with({.top_p = top_p}, logits);
    const auto full = softmax(logits);
    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    double cumulative = 0.0;
    size_t n_keep = 0;
    while (cumulative < top_p) cumulative += full[order[n_keep++]];
    size_t n_nonzero = 0;
    for (float p : probs) n_nonzero += p > 0.0f;
    EXPECT_EQ(n_nonzero, n_keep) << "top_p " << top_p;
    for (size_t i = 0; i < n_keep; ++i)
      EXPECT_NEAR(probs[order[i]], full[order[i]] / cumulative, 1e-6) << "top_p " << top_p;
  }
}

TEST(Sampler, MinPIsRelativeToMostLikelyToken) {
  const auto logits = log_of(kBase);
  // threshold 0.4 · 0.5 = 0.2
  expect_probs(probs_with({.min_p = 0.4f}, logits), {0.625f, 0.375f, 0.0f, 0.0f});
  // threshold 0.3 · 0.5 = 0.15 keeps token 2 exactly on the boundary
  expect_probs(probs_with({.min_p = 0.3f}, logits), {0.5f / 0.95f, 0.3f / 0.95f, 0.15f / 0.95f, 0.0f});
  expect_probs(probs_with({.min_p = 1.0f}, logits), {1.0f, 0.0f, 0.0f, 0.0f});
  // Not the reference's version (SPEC §8.17), which thresholds on the logit of token 0: here
  // token 0 is the least likely and the max is token 2.
  expect_probs(probs_with({.min_p = 0.4f}, log_of({0.05f, 0.3f, 0.5f, 0.15f})), {0.0f, 0.375f, 0.625f, 0.0f});
}

TEST(Sampler, TopK) {
  const auto logits = log_of(kBase);
  expect_probs(probs_with({.top_k = 2}, logits), {0.625f, 0.375f, 0.0f, 0.0f});
  expect_probs(probs_with({.top_k = 3}, logits), {0.5f / 0.95f, 0.3f / 0.95f, 0.15f / 0.95f, 0.0f});
  expect_probs(probs_with({.top_k = 4}, logits), kBase);
  expect_probs(probs_with({.top_k = 100}, logits), kBase);
  expect_probs(probs_with({.top_k = -1}, logits), kBase);
  // Equal logits: the lower ids win.
  expect_probs(probs_with({.top_k = 2}, {1.0f, 2.0f, 0.0f, 2.0f, 2.0f}), {0, 0.5f, 0, 0.5f, 0});
}

TEST(Sampler, TemperatureScalesLogits) {
  const auto logits = log_of(kBase);
  // T = 0.5 → p ∝ p^2; T = 2 → p ∝ sqrt(p).
  for (float temperature : {0.5f, 2.0f}) {
    std::vector<float> expected;
    for (float p : kBase) expected.push_back(std::pow(p, 1.0f / temperature));
    const float sum = std::accumulate(expected.begin(), expected.end(), 0.0f);
    for (float& p : expected) p /= sum;
    expect_probs(probs_with({.temperature = temperature}, logits), expected);
  }
}

TEST(Sampler, TemperatureEmpiricalFrequencies) {
  const auto logits = log_of(kBase);
  const int n_draws = 200000;
  for (float temperature : {1.0f, 0.5f, 2.0f}) {
    Sampler sampler({.temperature = temperature, .seed = 7}, 4);
    const auto expected = sampler.probabilities(logits.data(), {});
    std::vector<int> counts(4, 0);
    for (int i = 0; i < n_draws; ++i) ++counts[sampler.sample(logits.data(), {})];
    // Standard deviation of a frequency is at most sqrt(0.25 / n) ≈ 0.0011: 5 sigma.
    for (size_t t = 0; t < 4; ++t)
      EXPECT_NEAR(static_cast<double>(counts[t]) / n_draws, expected[t], 0.0056)
          << "T " << temperature << " token " << t;
  }
}

TEST(Sampler, FilteredTokensAreNeverDrawn) {
  const auto logits = log_of(kBase);
  Sampler sampler({.top_p = 0.8f, .seed = 1}, 4);
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 20000; ++i) ++counts[sampler.sample(logits.data(), {})];
  EXPECT_EQ(counts[2] + counts[3], 0);
  EXPECT_NEAR(counts[0] / 20000.0, 0.625, 0.02);
}

TEST(Sampler, OrderTemperatureBeforeTopPAndTopKFirst) {
  const auto logits = log_of(kBase);
  // T = 0.5: p ≈ [0.685, 0.247, 0.062, 0.007]; top_p 0.65 now keeps the top token only,
  // where at T = 1 it keeps two.
  expect_probs(probs_with({.top_p = 0.65f}, logits), {0.625f, 0.375f, 0.0f, 0.0f});
  expect_probs(probs_with({.temperature = 0.5f, .top_p = 0.65f}, logits), {1.0f, 0.0f, 0.0f, 0.0f});
  // Top-k renormalizes before top-p: over {0, 1, 2} the probabilities are [0.526, 0.316,
  // 0.158], so top_p 0.82 needs two tokens (0.842), where over the whole vocabulary it needs
  // three (0.8 < 0.82).
  expect_probs(probs_with({.top_p = 0.82f}, logits), {0.5f / 0.95f, 0.3f / 0.95f, 0.15f / 0.95f, 0.0f});
  expect_probs(probs_with({.top_k = 3, .top_p = 0.82f}, logits), {0.625f, 0.375f, 0.0f, 0.0f});
  // Min-p after top-p: top_p 0.9 keeps {0, 1, 2}; min_p 0.35 then drops token 2
  // (0.158 < 0.35 · 0.526).
  expect_probs(probs_with({.top_k = 3, .top_p = 0.9f}, logits),
               {0.5f / 0.95f, 0.3f / 0.95f, 0.15f / 0.95f, 0.0f});
  expect_probs(probs_with({.top_k = 3, .top_p = 0.9f, .min_p = 0.35f}, logits), {0.625f, 0.375f, 0.0f, 0.0f});
}

TEST(Sampler, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 1.0f};
  // Tokens 0, 1, 3 are in the window (1 twice: repetition counts distinct tokens once).
  expect_probs(probs_with({.repetition_penalty = 2.0f}, logits, {0, 1, 1, 3}),
               softmax({1.0f, -2.0f, 0.5f, 0.5f}));
}

TEST(Sampler, PresenceAndFrequencyPenalties) {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 1.0f};
  const std::vector<int32_t> history = {0, 0, 0, 2};
  // token 0: 2 - 0.25 - 3·0.5; token 2: 0.5 - 0.25 - 1·0.5
  expect_probs(probs_with({.presence_penalty = 0.25f, .frequency_penalty = 0.5f}, logits, history),
               softmax({0.25f, -1.0f, -0.25f, 1.0f}));
  // All three at once: repetition first, then the subtractions.
  expect_probs(probs_with({.repetition_penalty = 2.0f, .presence_penalty = 0.25f, .frequency_penalty = 0.5f},
                          logits, history),
               softmax({1.0f - 0.25f - 1.5f, -1.0f, 0.25f - 0.25f - 0.5f, 1.0f}));
}

TEST(Sampler, PenaltyWindow) {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 1.0f};
  const std::vector<int32_t> history = {0, 0, 0, 2};
  // The last 2 tokens are {0, 2}: count 1 each.
  expect_probs(probs_with({.frequency_penalty = 0.5f, .penalty_last_n = 2}, logits, history),
               softmax({1.5f, -1.0f, 0.0f, 1.0f}));
  expect_probs(probs_with({.frequency_penalty = 0.5f, .penalty_last_n = -1}, logits, history),
               softmax({0.5f, -1.0f, 0.0f, 1.0f}));
  expect_probs(probs_with({.frequency_penalty = 0.5f, .penalty_last_n = 0}, logits, history),
               softmax(logits));
  // A window longer than the history is the whole history.
  expect_probs(probs_with({.frequency_penalty = 0.5f, .penalty_last_n = 100}, logits, history),
               softmax({0.5f, -1.0f, 0.0f, 1.0f}));
  // Ids outside the vocabulary are ignored.
  expect_probs(probs_with({.repetition_penalty = 2.0f}, logits, {-1, 4, 99}), softmax(logits));
}

TEST(Sampler, GreedyIsArgmax) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-5.0f, 5.0f);
  Sampler by_temperature({.temperature = 0.0f}, 50);
  Sampler by_top_k({.top_k = 1}, 50);
  Sampler negative_temperature({.temperature = -1.0f}, 50);
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<float> logits(50);
    for (float& x : logits) x = uniform(rng);
    const auto argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(by_temperature.sample(logits.data(), {}), argmax);
    EXPECT_EQ(by_top_k.sample(logits.data(), {}), argmax);
    EXPECT_EQ(negative_temperature.sample(logits.data(), {}), argmax);
  }
  // Ties → lowest id; one-hot probabilities.
  const std::vector<float> tied = {0.0f, 3.0f, 1.0f, 3.0f};
  EXPECT_EQ(Sampler({.temperature = 0.0f}, 4).sample(tied.data(), {}), 1);
  expect_probs(Sampler({.top_k = 1}, 4).probabilities(tied.data(), {}), {0, 1, 0, 0});
  // Greedy sees the penalized logits: token 1 (3 / 4 = 0.75) now loses to token 3.
  Sampler penalized({.temperature = 0.0f, .repetition_penalty = 4.0f}, 4);
  EXPECT_EQ(penalized.sample(tied.data(), std::vector<int32_t>{1}), 3);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferent) {
  const std::vector<float> logits(64, 0.0f);  // uniform: every draw is pure RNG
  auto draw = [&](Sampler& sampler) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 100; ++i) tokens.push_back(sampler.sample(logits.data(), tokens));
    return tokens;
  };
  Sampler a({.seed = 42}, 64);
  Sampler b({.seed = 42}, 64);
  Sampler c({.seed = 43}, 64);
  const auto tokens_a = draw(a);
  EXPECT_EQ(tokens_a, draw(b));
  EXPECT_NE(tokens_a, draw(c));
  a.reset(42);
  EXPECT_EQ(draw(a), tokens_a);
  c.reset(42);
  EXPECT_EQ(draw(c), tokens_a);
  EXPECT_EQ(c.params().seed, 42u);
}

TEST(Sampler, PaddedVocabColumnsAreNeverSampled) {
  // A row of 8 columns over a 4-token vocabulary; padding holds the largest logits.
  const std::vector<float> logits = {0.0f, 0.1f, 0.2f, 0.3f, 100.0f, 100.0f, 100.0f, 100.0f};
  Sampler sampler({.seed = 5}, 4);
  for (int i = 0; i < 2000; ++i) EXPECT_LT(sampler.sample(logits.data(), {}), 4);
  Sampler greedy({.temperature = 0.0f}, 4);
  EXPECT_EQ(greedy.sample(logits.data(), {}), 3);
  const auto probs = sampler.probabilities(logits.data(), {});
  ASSERT_EQ(probs.size(), 4u);
  expect_probs(probs, softmax({0.0f, 0.1f, 0.2f, 0.3f}));
  EXPECT_EQ(sampler.vocab_size(), 4);
}

TEST(Sampler, NonFiniteLogits) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // −inf and NaN are never drawn.
  const std::vector<float> masked = {-kInf, 0.0f, nan, 0.0f};
  Sampler sampler({.seed = 9}, 4);
  for (int i = 0; i < 1000; ++i) {
    const int32_t token = sampler.sample(masked.data(), {});
    EXPECT_TRUE(token == 1 || token == 3) << token;
  }
  expect_probs(sampler.probabilities(masked.data(), {}), {0, 0.5f, 0, 0.5f});
  // A row without a finite maximum falls back to greedy.
  const std::vector<float> all_masked(4, -kInf);
  EXPECT_EQ(sampler.sample(all_masked.data(), {}), 0);
  EXPECT_EQ(sampler.sample(std::vector<float>{0.0f, kInf, 1.0f, kInf}.data(), {}), 1);
}

TEST(Sampler, RejectsBadParams) {
  EXPECT_THROW(Sampler({.top_p = 1.5f}, 4), Error);
  EXPECT_THROW(Sampler({.top_p = -0.1f}, 4), Error);
  EXPECT_THROW(Sampler({.min_p = 2.0f}, 4), Error);
  EXPECT_THROW(Sampler({.repetition_penalty = 0.0f}, 4), Error);
  EXPECT_THROW(Sampler({.penalty_last_n = -2}, 4), Error);
  EXPECT_THROW(Sampler({.temperature = std::numeric_limits<float>::quiet_NaN()}, 4), Error);
  EXPECT_THROW(Sampler({}, 0), Error);
  try {
    validate({.top_p = 1.5f});
    FAIL() << "expected a throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("top_p"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mamba::sampling
