// Finite-difference check of causal_conv1d_bwd from a zero state: with and without silu and
// bias, strided input rows (a column block, as the mixers pass it), a sequence shorter than the
// kernel.
#include <gtest/gtest.h>

#include "exec_testing.h"
#include "grad_check.h"
#include "ops/causal_conv1d/causal_conv1d.h"
#include "testing.h"

namespace mamba::ops {
namespace {

void check(int64_t seq_len, bool act, bool with_bias, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t batch = 2, channels = 5, width = 4;
  Tensor wide = testing::random_tensor({batch, seq_len, channels + 3}, rng, -2, 2);  // x = columns [1, 6)
  Tensor w = testing::random_tensor({channels, width}, rng);
  Tensor b = with_bias ? testing::random_tensor({channels}, rng) : Tensor();
  Tensor dout = testing::random_tensor({batch, seq_len, channels}, rng);
  Tensor dw = Tensor::zeros({channels, width}), db = with_bias ? Tensor::zeros({channels}) : Tensor();
  const Tensor x = wide.slice(2, 1, 1 + channels);
  const Tensor dx = causal_conv1d_bwd(exec, dout, x, w, b, act, dw, db);
  Tensor dwide = Tensor::zeros(wide.shape());
  dwide.slice(2, 1, 1 + channels).copy_from(dx);
  auto loss = [&] {
    Tensor state = Tensor::zeros({batch, channels, width - 1});
    return testing::weighted_sum(causal_conv1d_fwd(exec, x, w, b, state, act), dout);
  };
  std::vector<testing::GradInput> inputs = {{"x", wide, dwide}, {"weight", w, dw}};
  if (with_bias) inputs.push_back({"bias", b, db});
  testing::expect_grads_match(loss, inputs);
}

TEST(CausalConv1dBwd, SiluWithBias) {
  check(9, true, true, 1);
}
TEST(CausalConv1dBwd, NoActivationNoBias) {
  check(9, false, false, 2);
}
TEST(CausalConv1dBwd, ShorterThanKernel) {
  check(2, true, true, 3);
}

}  // namespace
}  // namespace mamba::ops
