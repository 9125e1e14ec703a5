// causal_conv1d on CUDA vs the CPU op: widths 2..5, with/without bias and silu, row-strided x,
// and the carried state across a split prefill followed by one-token steps. Label `cuda`.
#include <gtest/gtest.h>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/causal_conv1d/causal_conv1d.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

TEST(CausalConv1dCuda, PrefillThenSteps) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (auto [batch, seq_len, channels, width] :
       {std::tuple{1, 1, 5, 4}, {2, 13, 33, 4}, {3, 70, 64, 2}, {2, 9, 17, 5}}) {
    for (bool with_bias : {false, true}) {
      const bool silu = with_bias;  // both activations, both bias settings
      const Tensor wide = testing::random_tensor({batch, seq_len, channels + 6}, rng);
      const Tensor x = wide.slice(-1, 3, channels + 3);  // rows at stride channels + 6
      const Tensor gx = on_cuda(wide).slice(-1, 3, channels + 3);
      const Tensor w = testing::random_tensor({channels, width}, rng);
      const Tensor b = with_bias ? testing::random_tensor({channels}, rng) : Tensor();
      const Tensor s0 = testing::random_tensor({batch, channels, width - 1}, rng);  // a continued sequence
      // Whole sequence.
      Tensor s = s0.copy(), gs = on_cuda(s0);
      const Tensor y = causal_conv1d_fwd(exec, x, w, b, s, silu);
      EXPECT_LT(scaled_max_diff(causal_conv1d_fwd(exec, gx, on_cuda(w), on_cuda(b), gs, silu), y), 1e-6f);
      EXPECT_LT(scaled_max_diff(gs, s), 1e-7f) << "state after the sequence";
      // Split: prefill of k tokens (k < width - 1 exercises the state shift), then steps.
      const int64_t k = std::min<int64_t>(seq_len, 1);
      Tensor gs2 = on_cuda(s0);
      const Tensor gy = causal_conv1d_fwd(exec, gx.slice(1, 0, k), on_cuda(w), on_cuda(b), gs2, silu);
      EXPECT_LT(scaled_max_diff(gy, y.slice(1, 0, k).contiguous()), 1e-6f);
      for (int64_t t = k; t < seq_len; ++t) {
        const Tensor yt = causal_conv1d_step(exec, gx.select(1, t), on_cuda(w), on_cuda(b), gs2, silu);
        EXPECT_LT(scaled_max_diff(yt, y.select(1, t).contiguous()), 1e-6f) << "step " << t;
      }
      EXPECT_LT(scaled_max_diff(gs2, s), 1e-7f) << "state after the steps";
    }
  }
}

// Decode: one-token forward calls (their own kernel) give the whole-sequence forward's outputs and
// state bit for bit.
TEST(CausalConv1dCuda, OneTokenCallsAreTheSequenceBitForBit) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  for (auto [batch, seq_len, channels, width] : {std::tuple{1, 6, 40, 4}, {3, 5, 33, 2}, {2, 4, 17, 5}}) {
    const Tensor gx =
        on_cuda(testing::random_tensor({batch, seq_len, channels + 6}, rng)).slice(-1, 3, channels + 3);
    const Tensor w = on_cuda(testing::random_tensor({channels, width}, rng));
    const Tensor b = on_cuda(testing::random_tensor({channels}, rng));
    const Tensor s0 = on_cuda(testing::random_tensor({batch, channels, width - 1}, rng));
    Tensor s_all = s0.copy(), s_one = s0.copy();
    const Tensor y = causal_conv1d_fwd(exec, gx, w, b, s_all, /*act=*/true).to(Device::cpu);
    for (int64_t t = 0; t < seq_len; ++t) {
      const Tensor yt = causal_conv1d_fwd(exec, gx.slice(1, t, t + 1), w, b, s_one, /*act=*/true);
      EXPECT_EQ(testing::max_abs_diff(yt.to(Device::cpu), y.slice(1, t, t + 1).contiguous()), 0.0f)
          << "token " << t;
    }
    EXPECT_EQ(testing::max_abs_diff(s_one.to(Device::cpu), s_all.to(Device::cpu)), 0.0f) << "state";
  }
}

}  // namespace
}  // namespace mamba::ops
