// ssd_bwd on CUDA vs the CPU ssd_bwd on random inputs: lengths 1, 7, 77, 300 and several
// 256-token chunks with a ragged tail, n_groups 1 and 2, d_state 16..256, head_dim from a few rows
// to more than one block's tile, D per head and per channel. Label `cuda`.
#include <gtest/gtest.h>

#include <string>

#include "cuda_testing.h"
#include "ops/ssd/ssd.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

struct Case {
  int64_t batch, seq_len, n_heads, head_dim, n_groups, d_state;
};

TEST(SsdBwdCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(3);
  for (const Case s : {Case{1, 1, 2, 4, 1, 16},
                       {2, 7, 4, 8, 2, 16},
                       {1, 77, 4, 5, 2, 64},
                       {2, 300, 4, 16, 1, 128},
                       {1, 300, 4, 20, 2, 64},
                       {1, 600, 2, 64, 1, 128},
                       {1, 257, 2, 80, 2, 32},
                       {2, 40, 2, 8, 1, 256},
                       {1, 1100, 2, 64, 2, 128}}) {
    for (bool d_per_channel : {false, true}) {
      SsdArgs a;
      a.x = testing::random_tensor({s.batch, s.seq_len, s.n_heads, s.head_dim}, rng);
      a.dt = testing::random_tensor({s.batch, s.seq_len, s.n_heads}, rng, 0.001f, 0.5f);
      a.A = testing::random_tensor({s.n_heads}, rng, -4.0f, -0.1f);
      a.B = testing::random_tensor({s.batch, s.seq_len, s.n_groups, s.d_state}, rng);
      a.C = testing::random_tensor({s.batch, s.seq_len, s.n_groups, s.d_state}, rng);
      a.D = testing::random_tensor({d_per_channel ? s.n_heads * s.head_dim : s.n_heads}, rng);
      const Tensor dy = testing::random_tensor({s.batch, s.seq_len, s.n_heads, s.head_dim}, rng);
      SsdArgs g = a;
      for (Tensor* t : {&g.x, &g.dt, &g.A, &g.B, &g.C, &g.D}) *t = on_cuda(*t);
      const SsdGrads ref = ssd_bwd(a, dy), got = ssd_bwd(g, on_cuda(dy));
      // fp32 both ways, different summation orders (CPU: per token over the whole sequence; GPU:
      // chunk-passed states, shared-memory sums over rows, and ddt/dA from a reverse cumulative sum
      // over at most 256 tokens): rounding grows with the number of tokens a value depends on, so
      // longer sequences get a looser bound.
      const float tol = s.seq_len > 256 ? 3e-4f : 1e-4f;
      const std::string where = "L " + std::to_string(s.seq_len) + " P " + std::to_string(s.head_dim) +
                                " G " + std::to_string(s.n_groups) + " N " + std::to_string(s.d_state) +
                                (d_per_channel ? " D/channel" : " D/head");
      EXPECT_LT(scaled_max_diff(got.dx, ref.dx), tol) << "dx " << where;
      EXPECT_LT(scaled_max_diff(got.ddt, ref.ddt), tol) << "ddt " << where;
      EXPECT_LT(scaled_max_diff(got.dA, ref.dA), tol) << "dA " << where;
      EXPECT_LT(scaled_max_diff(got.dB, ref.dB), tol) << "dB " << where;
      EXPECT_LT(scaled_max_diff(got.dC, ref.dC), tol) << "dC " << where;
      EXPECT_LT(scaled_max_diff(got.dD, ref.dD), tol) << "dD " << where;
    }
  }
}

}  // namespace
}  // namespace mamba::ops
