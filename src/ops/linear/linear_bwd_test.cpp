// Finite-difference check of linear_bwd (dx, dweight, dbias) and that it accumulates.
#include <gtest/gtest.h>

#include "exec_testing.h"
#include "grad_check.h"
#include "ops/linear/linear.h"
#include "testing.h"

namespace mamba::ops {
namespace {

TEST(LinearBwd, MatchesFiniteDifferences) {
  std::mt19937 rng(1);
  Tensor x = testing::random_tensor({2, 3, 5}, rng), w = testing::random_tensor({6, 5}, rng);
  Tensor b = testing::random_tensor({6}, rng), dout = testing::random_tensor({2, 3, 6}, rng);
  Tensor dw = Tensor::zeros({6, 5}), db = Tensor::zeros({6});
  const Tensor dx = linear_bwd(exec, dout, x, w, dw, db);
  testing::expect_grads_match([&] { return testing::weighted_sum(linear(exec, x, w, b), dout); },
                              {{"x", x, dx}, {"weight", w, dw}, {"bias", b, db}});
}

TEST(LinearBwd, AccumulatesParameterGradients) {
  std::mt19937 rng(2);
  Tensor x = testing::random_tensor({4, 3}, rng), w = testing::random_tensor({2, 3}, rng);
  Tensor dout = testing::random_tensor({4, 2}, rng);
  Tensor dw1 = Tensor::zeros({2, 3}), db1 = Tensor::zeros({2}), dw2 = Tensor::zeros({2, 3}),
         db2 = Tensor::zeros({2});
  linear_bwd(exec, dout, x, w, dw1, db1);
  linear_bwd(exec, dout, x, w, dw2, db2);
  linear_bwd(exec, dout, x, w, dw2, db2);
  for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(dw2.f32()[i], 2 * dw1.f32()[i], 1e-5);
  for (int64_t i = 0; i < 2; ++i) EXPECT_NEAR(db2.f32()[i], 2 * db1.f32()[i], 1e-5);
}

}  // namespace
}  // namespace mamba::ops
