// causal_conv1d vs the definition (zero-padded convolution), and split/step composition.
#include "ops/causal_conv1d/causal_conv1d.h"

#include <gtest/gtest.h>

#include "exec_testing.h"
#include "ops/elementwise/activations.h"
#include "testing.h"

namespace mamba::ops {
namespace {

// Direct evaluation of SPEC §0 from a zero state.
Tensor naive(const Tensor& x, const Tensor& w, const Tensor& b, bool act) {
  const int64_t B = x.size(0), L = x.size(1), C = x.size(2), K = w.size(1);
  Tensor y = Tensor::empty({B, L, C});
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < C; ++c) {
        double acc = b.f32()[c];
        for (int64_t k = 0; k < K; ++k) {
          const int64_t tau = t - (K - 1) + k;
          if (tau >= 0) acc += double(w.f32()[c * K + k]) * x.f32()[(bi * L + tau) * C + c];
        }
        y.f32()[(bi * L + t) * C + c] = act ? silu(float(acc)) : float(acc);
      }
  return y;
}

TEST(CausalConv1d, MatchesDefinitionAndComposes) {
  std::mt19937 rng(5);
  for (int64_t L : {1, 2, 3, 7, 20}) {
    const int64_t B = 2, C = 70, K = 4;  // C: a block of 64 channels and a partial one
    Tensor x = testing::random_tensor({B, L, C}, rng);
    Tensor w = testing::random_tensor({C, K}, rng), b = testing::random_tensor({C}, rng);
    Tensor state = Tensor::zeros({B, C, K - 1});
    Tensor y = causal_conv1d_fwd(exec, x, w, b, state, true);
    Tensor ref = naive(x, w, b, true);
    EXPECT_LT(testing::max_abs_diff(y, ref), 1e-5f) << "L=" << L;
    // Prefill of `split` tokens then one-token steps equals the whole sequence.
    for (int64_t split = 0; split <= L; ++split) {
      Tensor st = Tensor::zeros({B, C, K - 1});
      Tensor y0 = causal_conv1d_fwd(exec, x.slice(1, 0, split), w, b, st, true);
      EXPECT_LT(testing::max_abs_diff(y0, ref.slice(1, 0, split).contiguous()), 1e-5f);
      for (int64_t t = split; t < L; ++t) {
        Tensor yt = causal_conv1d_step(exec, x.select(1, t), w, b, st, true);
        EXPECT_LT(testing::max_abs_diff(yt, ref.select(1, t).contiguous()), 1e-5f) << "t=" << t;
      }
      EXPECT_LT(testing::max_abs_diff(st, state), 1e-7f);
      // The rest as a second prefill from the carried state (its first width − 1 tokens read it).
      Tensor st2 = Tensor::zeros({B, C, K - 1});
      causal_conv1d_fwd(exec, x.slice(1, 0, split), w, b, st2, true);
      if (split < L) {
        Tensor y1 = causal_conv1d_fwd(exec, x.slice(1, split, L), w, b, st2, true);
        EXPECT_LT(testing::max_abs_diff(y1, ref.slice(1, split, L).contiguous()), 1e-5f) << "split=" << split;
      }
      EXPECT_LT(testing::max_abs_diff(st2, state), 1e-7f);
    }
  }
}

}  // namespace
}  // namespace mamba::ops
