// Finite-difference checks of attention_bwd (causal, grouped KV heads: dq, dk, dv) and of
// rotary_bwd (half-split and interleaved pairs, a partial rotary dim, a nonzero start position).
#include <gtest/gtest.h>

#include <cmath>

#include "exec_testing.h"
#include "grad_check.h"
#include "ops/attention/attention.h"
#include "testing.h"

namespace mamba::ops {
namespace {

TEST(AttentionBwd, CausalGroupedHeads) {
  std::mt19937 rng(1);
  const int64_t batch = 2, L = 6, nh = 4, nkv = 2, hd = 3;
  Tensor q = testing::random_tensor({batch, L, nh, hd}, rng),
         k = testing::random_tensor({batch, L, nkv, hd}, rng);
  Tensor v = testing::random_tensor({batch, L, nkv, hd}, rng),
         dout = testing::random_tensor({batch, L, nh, hd}, rng);
  const float scale = 1.0f / std::sqrt(3.0f);
  Tensor dq, dk, dv;
  attention_bwd(exec, dout, q, k, v, scale, dq, dk, dv);
  testing::expect_grads_match(
      [&] { return testing::weighted_sum(attention_fwd(exec, q, k, v, 0, scale), dout); },
      {{"q", q, dq}, {"k", k, dk}, {"v", v, dv}});
}

TEST(AttentionBwd, RotaryBothPairings) {
  std::mt19937 rng(2);
  for (bool interleaved : {false, true}) {
    Tensor x = testing::random_tensor({2, 5, 3, 8}, rng), dout = testing::random_tensor({2, 5, 3, 8}, rng);
    Tensor dx = dout.copy();
    rotary_bwd(exec, dx, 6, 3, 10000.0f, interleaved);
    auto loss = [&] {
      Tensor y = x.copy();
      rotary_apply(exec, y, 6, 3, 10000.0f, interleaved);
      return testing::weighted_sum(y, dout);
    };
    testing::expect_grads_match(loss, {{"x", x, dx}});
  }
}

}  // namespace
}  // namespace mamba::ops
