// Finite-difference checks of the normalizations' backward: RMSNorm, LayerNorm, and the gated,
// grouped RMSNorm in both gate orders (and without a gate).
#include <gtest/gtest.h>

#include "exec_testing.h"
#include "grad_check.h"
#include "ops/norm/norm.h"
#include "testing.h"

namespace mamba::ops {
namespace {

TEST(NormBwd, RmsNorm) {
  std::mt19937 rng(1);
  Tensor x = testing::random_tensor({2, 3, 7}, rng, -2, 2), w = testing::random_tensor({7}, rng);
  Tensor dout = testing::random_tensor({2, 3, 7}, rng), dw = Tensor::zeros({7});
  const Tensor dx = rms_norm_bwd(exec, dout, x, w, 1e-5f, dw);
  testing::expect_grads_match([&] { return testing::weighted_sum(rms_norm(exec, x, w, 1e-5f), dout); },
                              {{"x", x, dx}, {"weight", w, dw}});
}

TEST(NormBwd, LayerNorm) {
  std::mt19937 rng(2);
  Tensor x = testing::random_tensor({5, 9}, rng, -2, 2), w = testing::random_tensor({9}, rng);
  Tensor b = testing::random_tensor({9}, rng), dout = testing::random_tensor({5, 9}, rng);
  Tensor dw = Tensor::zeros({9}), db = Tensor::zeros({9});
  const Tensor dx = layer_norm_bwd(exec, dout, x, w, 1e-5f, dw, db);
  testing::expect_grads_match([&] { return testing::weighted_sum(layer_norm(exec, x, w, b, 1e-5f), dout); },
                              {{"x", x, dx}, {"weight", w, dw}, {"bias", b, db}});
}

TEST(NormBwd, GatedGroupedBothOrders) {
  std::mt19937 rng(3);
  for (bool before : {false, true}) {
    Tensor x = testing::random_tensor({3, 12}, rng, -2, 2), z = testing::random_tensor({3, 12}, rng, -2, 2);
    Tensor w = testing::random_tensor({12}, rng), dout = testing::random_tensor({3, 12}, rng);
    Tensor dw = Tensor::zeros({12}), dz;
    const Tensor dx = rms_norm_gated_bwd(exec, dout, x, z, w, 4, before, 1e-5f, dw, dz);
    SCOPED_TRACE(before ? "norm before gate" : "gate before norm");
    testing::expect_grads_match(
        [&] { return testing::weighted_sum(rms_norm_gated(exec, x, z, w, 4, before, 1e-5f), dout); },
        {{"x", x, dx}, {"z", z, dz}, {"weight", w, dw}});
  }
}

TEST(NormBwd, GroupedWithoutGate) {
  std::mt19937 rng(4);
  Tensor x = testing::random_tensor({4, 10}, rng, -2, 2), w = testing::random_tensor({10}, rng);
  Tensor dout = testing::random_tensor({4, 10}, rng), dw = Tensor::zeros({10}), dz;
  const Tensor dx = rms_norm_gated_bwd(exec, dout, x, Tensor(), w, 5, false, 1e-5f, dw, dz);
  EXPECT_FALSE(dz.defined());
  testing::expect_grads_match(
      [&] { return testing::weighted_sum(rms_norm_gated(exec, x, Tensor(), w, 5, false, 1e-5f), dout); },
      {{"x", x, dx}, {"weight", w, dw}});
}

}  // namespace
}  // namespace mamba::ops
