// Finite-difference check of selective_scan_bwd: every input (u, δ_raw, δ bias, A, B, C, D, z),
// with B and C as strided column views as Mamba-1 passes them, with and without the z gate.
#include <gtest/gtest.h>

#include "exec_testing.h"
#include "grad_check.h"
#include "ops/selective_scan/selective_scan.h"
#include "testing.h"

namespace mamba::ops {
namespace {

void check(bool gated, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t batch = 2, L = 7, DI = 5, N = 4;
  SelectiveScanArgs a;
  a.u = testing::random_tensor({batch, L, DI}, rng);
  a.delta = testing::random_tensor({batch, L, DI}, rng, -2, 1);
  a.delta_bias = testing::random_tensor({DI}, rng, -1, 0.5f);
  a.A = testing::random_tensor({DI, N}, rng, -2, -0.2f);
  Tensor bc = testing::random_tensor({batch, L, 2 * N + 1}, rng);  // [dt_low | B | C] as in x_dbl
  a.B = bc.slice(2, 1, 1 + N);
  a.C = bc.slice(2, 1 + N, 1 + 2 * N);
  a.D = testing::random_tensor({DI}, rng);
  if (gated) a.z = testing::random_tensor({batch, L, DI}, rng, -2, 2);
  Tensor dout = testing::random_tensor({batch, L, DI}, rng);
  const SelectiveScanGrads g = selective_scan_bwd(exec, a, dout);
  Tensor dbc = Tensor::zeros(bc.shape());
  dbc.slice(2, 1, 1 + N).copy_from(g.dB);
  dbc.slice(2, 1 + N, 1 + 2 * N).copy_from(g.dC);
  auto loss = [&] {
    Tensor state = Tensor::zeros({batch, DI, N});
    return testing::weighted_sum(selective_scan_fwd(exec, a, state), dout);
  };
  std::vector<testing::GradInput> inputs = {
      {"u", a.u, g.du}, {"delta", a.delta, g.ddelta}, {"delta_bias", a.delta_bias, g.ddelta_bias},
      {"A", a.A, g.dA}, {"B and C", bc, dbc},         {"D", a.D, g.dD}};
  if (gated) inputs.push_back({"z", a.z, g.dz});
  testing::expect_grads_match(loss, inputs);
}

TEST(SelectiveScanBwd, Gated) {
  check(true, 1);
}
TEST(SelectiveScanBwd, Ungated) {
  check(false, 2);
}

}  // namespace
}  // namespace mamba::ops
