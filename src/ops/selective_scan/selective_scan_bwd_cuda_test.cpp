// selective_scan_bwd on CUDA vs the CPU selective_scan_bwd on random inputs: lengths 1, 7, 77, 300
// (segments of 4..32 tokens with a ragged tail), d_state 1..256, d_inner not a multiple of the
// block's channels, batch > 1, B/C as strided column views of one x_dbl, z gate on and off (z a
// column view too). Label `cuda`.
#include <gtest/gtest.h>

#include <string>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/selective_scan/selective_scan.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

TEST(SelectiveScanBwdCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(4);
  for (auto [batch, L, DI, N] : {std::tuple{1, 1, 8, 16},
                                 {2, 7, 5, 16},
                                 {1, 77, 33, 64},
                                 {2, 300, 20, 16},
                                 {1, 300, 9, 128},
                                 {1, 77, 12, 256},
                                 {3, 40, 16, 24},
                                 {1, 19, 7, 1}}) {
    for (bool gate : {false, true}) {
      SelectiveScanArgs a;
      a.u = testing::random_tensor({batch, L, DI}, rng);
      a.delta = testing::random_tensor({batch, L, DI}, rng, -4.0f, 1.0f);
      a.delta_bias = testing::random_tensor({DI}, rng, -1.0f, 0.0f);
      a.A = testing::random_tensor({DI, N}, rng, -4.0f, -0.1f);
      const Tensor x_dbl = testing::random_tensor({batch, L, 3 + 2 * N}, rng);  // [dt_low | B | C]
      a.B = x_dbl.slice(-1, 3, 3 + N);
      a.C = x_dbl.slice(-1, 3 + N, 3 + 2 * N);
      a.D = testing::random_tensor({DI}, rng);
      const Tensor xz = testing::random_tensor({batch, L, 2 * DI}, rng, -3.0f, 3.0f);
      if (gate) a.z = xz.slice(-1, DI, 2 * DI);
      const Tensor dy = testing::random_tensor({batch, L, DI}, rng);
      SelectiveScanArgs g = a;
      for (Tensor* t : {&g.u, &g.delta, &g.delta_bias, &g.A, &g.D}) *t = on_cuda(*t);
      const Tensor gx_dbl = on_cuda(x_dbl), gxz = on_cuda(xz);
      g.B = gx_dbl.slice(-1, 3, 3 + N);
      g.C = gx_dbl.slice(-1, 3 + N, 3 + 2 * N);
      if (gate) g.z = gxz.slice(-1, DI, 2 * DI);
      const SelectiveScanGrads ref = selective_scan_bwd(exec, a, dy),
                               got = selective_scan_bwd(exec, g, on_cuda(dy));
      // Both fp32 and sequential in time; they differ in summation order (warp sums over d_state,
      // shared-memory and atomic sums over channels and the batch): 1e-4 of the largest value.
      const float tol = 1e-4f;
      const std::string where = "L " + std::to_string(L) + " DI " + std::to_string(DI) + " N " +
                                std::to_string(N) + (gate ? " gated" : "");
      EXPECT_LT(scaled_max_diff(got.du, ref.du), tol) << "du " << where;
      EXPECT_LT(scaled_max_diff(got.ddelta, ref.ddelta), tol) << "ddelta " << where;
      EXPECT_LT(scaled_max_diff(got.ddelta_bias, ref.ddelta_bias), tol) << "ddelta_bias " << where;
      EXPECT_LT(scaled_max_diff(got.dA, ref.dA), tol) << "dA " << where;
      EXPECT_LT(scaled_max_diff(got.dB, ref.dB), tol) << "dB " << where;
      EXPECT_LT(scaled_max_diff(got.dC, ref.dC), tol) << "dC " << where;
      EXPECT_LT(scaled_max_diff(got.dD, ref.dD), tol) << "dD " << where;
      if (gate) {
        EXPECT_LT(scaled_max_diff(got.dz, ref.dz), tol) << "dz " << where;
      }
    }
  }
}

}  // namespace
}  // namespace mamba::ops
