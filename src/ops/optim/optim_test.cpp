// Optimizer kernels on CPU: AdamW's first step is lr·g/(|g| + eps) after decay (m, v from zero),
// the second against a hand evaluation of torch's formulas; sum of squares, scaling, zeroing.
#include "ops/optim/optim.h"

#include <gtest/gtest.h>

#include <cmath>

#include "exec_testing.h"
#include "testing.h"

namespace mamba::ops {
namespace {

AdamWScalars scalars(double lr, double wd, int64_t t) {
  AdamWScalars s;
  s.decay = 1.0 - lr * wd;
  s.step_size = lr / (1.0 - std::pow(s.beta1, static_cast<double>(t)));
  s.bc2_sqrt = std::sqrt(1.0 - std::pow(s.beta2, static_cast<double>(t)));
  return s;
}

TEST(Optim, AdamWFirstAndSecondStep) {
  Tensor p = Tensor::from_vector({1.0f, -2.0f, 0.5f}, {3});
  const Tensor g1 = Tensor::from_vector({0.3f, -4.0f, 0.0f}, {3});
  Tensor m = Tensor::zeros({3}), v = Tensor::zeros({3});
  const double lr = 0.1, wd = 0.01;
  adamw_update(exec, p, g1, m, v, scalars(lr, wd, 1));
  const float g1v[3] = {0.3f, -4.0f, 0.0f}, p0[3] = {1.0f, -2.0f, 0.5f};
  for (int i = 0; i < 3; ++i) {
    const double expect = p0[i] * (1 - lr * wd) - lr * g1v[i] / (std::fabs(double(g1v[i])) + 1e-8);
    EXPECT_NEAR(p.f32()[i], expect, 1e-6) << i;
    EXPECT_NEAR(m.f32()[i], 0.1 * g1v[i], 1e-7);
    EXPECT_NEAR(v.f32()[i], 0.001 * g1v[i] * g1v[i], 1e-9);
  }
  // Second step by hand (torch.optim.AdamW, single-tensor path).
  const float g2v[3] = {-0.1f, 1.0f, 2.0f};
  const Tensor g2 = Tensor::from_vector({g2v[0], g2v[1], g2v[2]}, {3});
  float pp[3], mm[3], vv[3];
  for (int i = 0; i < 3; ++i) pp[i] = p.f32()[i], mm[i] = m.f32()[i], vv[i] = v.f32()[i];
  adamw_update(exec, p, g2, m, v, scalars(lr, wd, 2));
  for (int i = 0; i < 3; ++i) {
    const double mi = 0.9 * mm[i] + 0.1 * g2v[i], vi = 0.999 * vv[i] + 0.001 * double(g2v[i]) * g2v[i];
    const double expect =
        pp[i] * (1 - lr * wd) - lr / (1 - 0.81) * mi / (std::sqrt(vi / (1 - 0.998001)) + 1e-8);
    EXPECT_NEAR(p.f32()[i], expect, 1e-6) << i;
  }
}

TEST(Optim, SumSquaresScaleZero) {
  Tensor t = Tensor::from_vector({3.0f, -4.0f, 0.5f}, {3});
  EXPECT_DOUBLE_EQ(sum_squares(exec, t), 25.25);
  EXPECT_EQ(sum_squares(exec, Tensor::zeros({0})), 0.0);
  scale_(exec, t, 0.5);
  EXPECT_EQ(t.f32()[1], -2.0f);
  zero_(exec, t);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.f32()[i], 0.0f);
}

TEST(Optim, SumSquaresTotalAndClipScale) {
  std::vector<Tensor> ts = {Tensor::from_vector({3.0f, -4.0f}, {2}), Tensor::zeros({0}),
                            Tensor::from_vector({12.0f}, {1})};
  const Tensor total = sum_squares_total(exec, ts);
  ASSERT_EQ(total.numel(), 1);
  EXPECT_EQ(*static_cast<const double*>(total.raw()), 169.0);  // norm 13
  clip_scale_(exec, ts[0], total, 26.0);                       // coef > 1: unchanged
  EXPECT_EQ(ts[0].f32()[0], 3.0f);
  clip_scale_(exec, ts[0], total, 0.0);  // max_norm 0 only measures
  EXPECT_EQ(ts[0].f32()[0], 3.0f);
  clip_scale_(exec, ts[2], total, 6.5);  // coef = 6.5 / (13 + 1e-6)
  EXPECT_EQ(ts[2].f32()[0], static_cast<float>(12.0f * (6.5 / (13.0 + 1e-6))));
  EXPECT_EQ(*static_cast<const double*>(sum_squares_total(exec, {}).raw()), 0.0);
}

}  // namespace
}  // namespace mamba::ops
