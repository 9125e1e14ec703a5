// Activations against their closed forms, including softplus's threshold branch.
#include "ops/elementwise/activations.h"

#include <gtest/gtest.h>

namespace mamba::ops {
namespace {

TEST(Activations, Values) {
  EXPECT_NEAR(softplus(0.0f), std::log(2.0f), 1e-7);
  EXPECT_NEAR(softplus(-30.0f), std::exp(-30.0), 1e-18);
  EXPECT_FLOAT_EQ(softplus(25.0f), 25.0f);  // threshold: identity above 20
  EXPECT_NEAR(softplus(19.0f), 19.0f + std::log1p(std::exp(-19.0)), 1e-5);
  EXPECT_NEAR(silu(1.0f), 1.0f / (1.0f + std::exp(-1.0f)), 1e-7);
  EXPECT_NEAR(sigmoid(-2.0f), 1.0 / (1.0 + std::exp(2.0)), 1e-7);
  EXPECT_FLOAT_EQ(silu(0.0f), 0.0f);
}

TEST(Activations, ExpNonpositiveIsAccurate) {
  double worst = 0;
  for (float x = -87.0f; x <= 0.0f; x += 0.0137f) {
    const double ref = std::exp(double(x));
    worst = std::max(worst, std::fabs(exp_nonpositive(x) - ref) / ref);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(exp_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(exp_nonpositive(-1000.0f), exp_nonpositive(-87.0f));
  EXPECT_EQ(exp_nonpositive(5.0f), 1.0f);  // clamped: only defined for x <= 0
}

TEST(Activations, SiluFastMatchesSilu) {
  double worst = 0;
  for (float v = -90.0f; v <= 90.0f; v += 0.00731f) {
    const double ref = double(v) / (1.0 + std::exp(-double(v)));
    if (std::fabs(ref) > 1e-30) worst = std::max(worst, std::fabs(silu_fast(v) - ref) / std::fabs(ref));
  }
  EXPECT_LT(worst, 5e-7);
  EXPECT_EQ(silu_fast(0.0f), 0.0f);
  EXPECT_LT(std::fabs(silu_fast(-200.0f)), 1e-30f);
  EXPECT_EQ(silu_fast(200.0f), 200.0f);
}

}  // namespace
}  // namespace mamba::ops
