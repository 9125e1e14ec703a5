// Norms vs naive double-precision references on random inputs (odd widths, groups, both gate orders).
#include "ops/norm/norm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "exec_testing.h"
#include "testing.h"

namespace mamba::ops {
namespace {

double silu_d(double v) {
  return v / (1.0 + std::exp(-v));
}

TEST(Norm, RmsNormMatchesNaive) {
  std::mt19937 rng(2);
  Tensor x = testing::random_tensor({3, 5, 37}, rng, -3, 3);
  Tensor w = testing::random_tensor({37}, rng);
  Tensor y = rms_norm(exec, x, w, 1e-5f);
  for (int64_t r = 0; r < 15; ++r) {
    double ss = 0;
    for (int i = 0; i < 37; ++i) ss += double(x.f32()[r * 37 + i]) * x.f32()[r * 37 + i];
    const double rstd = 1.0 / std::sqrt(ss / 37 + 1e-5);
    for (int i = 0; i < 37; ++i)
      EXPECT_NEAR(y.f32()[r * 37 + i], x.f32()[r * 37 + i] * rstd * w.f32()[i], 1e-5);
  }
}

TEST(Norm, LayerNormMatchesNaive) {
  std::mt19937 rng(3);
  Tensor x = testing::random_tensor({4, 19}, rng, -2, 2);
  Tensor w = testing::random_tensor({19}, rng), b = testing::random_tensor({19}, rng);
  Tensor y = layer_norm(exec, x, w, b, 1e-5f);
  for (int64_t r = 0; r < 4; ++r) {
    double mean = 0, var = 0;
    for (int i = 0; i < 19; ++i) mean += x.f32()[r * 19 + i];
    mean /= 19;
    for (int i = 0; i < 19; ++i) var += std::pow(x.f32()[r * 19 + i] - mean, 2);
    const double rstd = 1.0 / std::sqrt(var / 19 + 1e-5);
    for (int i = 0; i < 19; ++i)
      EXPECT_NEAR(y.f32()[r * 19 + i], (x.f32()[r * 19 + i] - mean) * rstd * w.f32()[i] + b.f32()[i], 1e-5);
  }
}

TEST(Norm, GatedGroupedBothOrders) {
  std::mt19937 rng(4);
  const int64_t n = 24, g = 8;
  Tensor x = testing::random_tensor({5, n}, rng, -2, 2), z = testing::random_tensor({5, n}, rng, -2, 2);
  Tensor w = testing::random_tensor({n}, rng);
  for (bool before : {false, true}) {
    Tensor y = rms_norm_gated(exec, x, z, w, g, before, 1e-5f);
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t grp = 0; grp < n / g; ++grp) {
        double v[g], ss = 0;
        for (int i = 0; i < g; ++i) {
          const int64_t k = r * n + grp * g + i;
          v[i] = x.f32()[k] * (before ? 1.0 : silu_d(z.f32()[k]));
          ss += v[i] * v[i];
        }
        const double rstd = 1.0 / std::sqrt(ss / g + 1e-5);
        for (int i = 0; i < g; ++i) {
          const int64_t k = r * n + grp * g + i;
          const double ref = v[i] * rstd * w.f32()[grp * g + i] * (before ? silu_d(z.f32()[k]) : 1.0);
          EXPECT_NEAR(y.f32()[k], ref, 1e-5);
        }
      }
  }
}

// The fused decode step equals add then norm bit for bit, and updates the residual in place.
TEST(Norm, AddNormEqualsAddThenNorm) {
  std::mt19937 rng(5);
  for (bool layer : {false, true}) {
    for (bool with_x : {true, false}) {
      const Tensor r0 = testing::random_tensor({3, 45}, rng, -2, 2), x = testing::random_tensor({3, 45}, rng);
      const Tensor w = testing::random_tensor({45}, rng), b = testing::random_tensor({45}, rng);
      Tensor expected_r = r0.copy();
      if (with_x)
        for (int64_t i = 0; i < expected_r.numel(); ++i) expected_r.f32()[i] += x.f32()[i];
      const Tensor expected =
          layer ? layer_norm(exec, expected_r, w, b, 1e-5f) : rms_norm(exec, expected_r, w, 1e-5f);
      Tensor r = r0.copy();
      const Tensor xin = with_x ? x : Tensor();
      const Tensor y =
          layer ? add_layer_norm_(exec, r, xin, w, b, 1e-5f) : add_rms_norm_(exec, r, xin, w, 1e-5f);
      EXPECT_EQ(testing::max_abs_diff(r, expected_r), 0.0f) << "layer " << layer << " x " << with_x;
      EXPECT_EQ(testing::max_abs_diff(y, expected), 0.0f) << "layer " << layer << " x " << with_x;
    }
  }
}

}  // namespace
}  // namespace mamba::ops
