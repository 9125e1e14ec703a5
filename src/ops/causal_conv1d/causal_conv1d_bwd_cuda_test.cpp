// causal_conv1d_bwd on CUDA vs the CPU op: with and without silu and bias, strided input rows
// (a column block of a wider projection), odd channel counts, sequences shorter than the kernel
// and long enough to span many row lanes; weight and bias gradients accumulate into nonzero
// values. Label `cuda`.
#include <gtest/gtest.h>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/causal_conv1d/causal_conv1d.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

TEST(CausalConv1dBwdCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (auto [batch, seq_len, channels, width] : {std::tuple{1, 1, 3, 4},
                                                 {2, 2, 5, 4},
                                                 {2, 9, 37, 4},
                                                 {3, 150, 70, 4},
                                                 {1, 33, 17, 2},
                                                 {2, 64, 40, 1},
                                                 {64, 300, 5, 4}}) {  // many rows, few channels
    for (bool act : {false, true}) {
      for (bool with_bias : {false, true}) {
        // x: columns [3, 3 + channels) of a wider tensor, rows at stride channels + 5.
        const Tensor wide = testing::random_tensor({batch, seq_len, channels + 5}, rng, -2.0f, 2.0f);
        const Tensor x = wide.slice(2, 3, 3 + channels), gx = on_cuda(wide).slice(2, 3, 3 + channels);
        const Tensor w = testing::random_tensor({channels, width}, rng);
        const Tensor b = with_bias ? testing::random_tensor({channels}, rng) : Tensor();
        const Tensor dy = testing::random_tensor({batch, seq_len, channels}, rng);
        Tensor dw = testing::random_tensor({channels, width}, rng), gdw = on_cuda(dw);
        Tensor db = with_bias ? testing::random_tensor({channels}, rng) : Tensor(), gdb = on_cuda(db);
        const Tensor gdx = causal_conv1d_bwd(exec, on_cuda(dy), gx, on_cuda(w), on_cuda(b), act, gdw, gdb);
        const Tensor dx = causal_conv1d_bwd(exec, dy, x, w, b, act, dw, db);
        const std::string what = std::to_string(batch) + "x" + std::to_string(seq_len) + "x" +
                                 std::to_string(channels) + " K" + std::to_string(width) + " silu " +
                                 std::to_string(act) + " bias " + std::to_string(with_bias);
        EXPECT_LT(scaled_max_diff(gdx, dx), 1e-5f) << what;
        EXPECT_LT(scaled_max_diff(gdw, dw), 1e-5f) << what;
        if (with_bias) {
          EXPECT_LT(scaled_max_diff(gdb, db), 1e-5f) << what;
        }
      }
    }
  }
}

TEST(CausalConv1dBwdCuda, BiasGradientWithoutBias) {
  // dbias defined while the forward had no bias (the CPU op allows it): Σ dpre is still added.
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  const Tensor x = testing::random_tensor({2, 21, 13}, rng), w = testing::random_tensor({13, 4}, rng);
  const Tensor dy = testing::random_tensor({2, 21, 13}, rng);
  Tensor dw = Tensor::zeros({13, 4}), db = testing::random_tensor({13}, rng);
  Tensor gdw = on_cuda(dw), gdb = on_cuda(db);
  const Tensor gdx = causal_conv1d_bwd(exec, on_cuda(dy), on_cuda(x), on_cuda(w), Tensor(), true, gdw, gdb);
  const Tensor dx = causal_conv1d_bwd(exec, dy, x, w, Tensor(), true, dw, db);
  EXPECT_LT(scaled_max_diff(gdx, dx), 1e-5f);
  EXPECT_LT(scaled_max_diff(gdw, dw), 1e-5f);
  EXPECT_LT(scaled_max_diff(gdb, db), 1e-5f);
}

}  // namespace
}  // namespace mamba::ops
