// Finite-difference checks of the Mamba-3 gates' backward. prepare: SISO (interleaved pairs) and
// MIMO (half-split, rank 2, two groups), data-dependent / none / fixed rotation; every input
// (proj, dt_bias, B/C biases, B/C norm weights). combine: SISO and MIMO, gate or head norm.
#include <gtest/gtest.h>

#include "exec_testing.h"
#include "grad_check.h"
#include "ops/mamba3_gates/mamba3_gates.h"
#include "testing.h"

namespace mamba::ops {
namespace {

void check_prepare(bool mimo, Mamba3Rope rope, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t batch = 2, L = 5, H = 4, P = 3, N = 8, G = mimo ? 2 : 1, R = mimo ? 2 : 1, S = 2;
  Mamba3Gates g{H,
                P,
                N,
                G,
                R,
                S,
                1e-4f,
                mimo,
                rope,
                testing::random_tensor({H}, rng),
                testing::random_tensor({H, R, N}, rng),
                testing::random_tensor({H, R, N}, rng),
                testing::random_tensor({N}, rng),
                testing::random_tensor({N}, rng)};
  Tensor proj = testing::random_tensor({batch, L, 2 * H * P + 2 * R * G * N + 3 * H + S}, rng, -2, 2);
  Mamba3ScanGrads d;  // the loss weights are the incoming gradients
  d.dq = testing::random_tensor({batch, L, R, H, N}, rng);
  d.dk = testing::random_tensor({batch, L, R, H, N}, rng);
  d.dadt = testing::random_tensor({batch, L, H}, rng);
  d.ddt = testing::random_tensor({batch, L, H}, rng);
  d.dtrap = testing::random_tensor({batch, L, H}, rng);
  Mamba3Gates dg = g;
  dg.dt_bias = Tensor::zeros({H});
  dg.B_bias = Tensor::zeros({H, R, N});
  dg.C_bias = Tensor::zeros({H, R, N});
  dg.B_norm_weight = Tensor::zeros({N});
  dg.C_norm_weight = Tensor::zeros({N});
  Tensor dproj = Tensor::zeros(proj.shape());
  mamba3_prepare_bwd(exec, proj, g, d, dproj, dg);
  auto loss = [&] {
    Tensor angle = Tensor::zeros({batch, H, S});
    Mamba3ScanArgs a;
    mamba3_prepare_fwd(exec, proj, g, angle, a);
    return testing::weighted_sum(a.q, d.dq) + testing::weighted_sum(a.k, d.dk) +
           testing::weighted_sum(a.adt, d.dadt) + testing::weighted_sum(a.dt, d.ddt) +
           testing::weighted_sum(a.trap, d.dtrap);
  };
  testing::expect_grads_match(loss,
                              {{"proj", proj, dproj},
                               {"dt_bias", g.dt_bias, dg.dt_bias},
                               {"B_bias", g.B_bias, dg.B_bias},
                               {"C_bias", g.C_bias, dg.C_bias},
                               {"B_norm_weight", g.B_norm_weight, dg.B_norm_weight},
                               {"C_norm_weight", g.C_norm_weight, dg.C_norm_weight}},
                              1e-3f, 1e-2f, 96);
}

TEST(Mamba3GatesBwd, PrepareSiso) {
  check_prepare(false, Mamba3Rope::data_dependent, 1);
}
TEST(Mamba3GatesBwd, PrepareMimo) {
  check_prepare(true, Mamba3Rope::data_dependent, 2);
}
TEST(Mamba3GatesBwd, PrepareNoRotation) {
  check_prepare(false, Mamba3Rope::none, 3);
}
TEST(Mamba3GatesBwd, PrepareFixedRotation) {
  check_prepare(true, Mamba3Rope::data_independent, 4);
}

void check_combine(bool mimo, bool outproj_norm, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t batch = 2, L = 3, H = 2, P = 4, R = mimo ? 2 : 1;
  Tensor y = testing::random_tensor({batch, L, R, H, P}, rng);
  Tensor wide = testing::random_tensor({batch, L, H * P + 3}, rng, -2, 2);  // z = columns [0, H·P)
  const Tensor z = wide.slice(2, 0, H * P);
  Tensor nw = outproj_norm ? testing::random_tensor({H * P}, rng) : Tensor();
  Tensor mz = mimo ? testing::random_tensor({H, R, P}, rng) : Tensor();
  Tensor mo = mimo ? testing::random_tensor({H, R, P}, rng) : Tensor();
  Tensor dout = testing::random_tensor({batch, L, H * P}, rng), dz;
  Tensor dnw = outproj_norm ? Tensor::zeros({H * P}) : Tensor();
  Tensor dmz = mimo ? Tensor::zeros({H, R, P}) : Tensor(), dmo = mimo ? Tensor::zeros({H, R, P}) : Tensor();
  const Tensor dy = mamba3_combine_bwd(exec, dout, y, z, nw, mz, mo, dz, dnw, dmz, dmo);
  Tensor dwide = Tensor::zeros(wide.shape());
  dwide.slice(2, 0, H * P).copy_from(dz);
  std::vector<testing::GradInput> inputs = {{"y", y, dy}, {"z", wide, dwide}};
  if (outproj_norm) inputs.push_back({"norm_weight", nw, dnw});
  if (mimo) {
    inputs.push_back({"mimo_z", mz, dmz});
    inputs.push_back({"mimo_o", mo, dmo});
  }
  testing::expect_grads_match(
      [&] { return testing::weighted_sum(mamba3_combine_fwd(exec, y, z, nw, mz, mo), dout); }, inputs);
}

TEST(Mamba3GatesBwd, CombineSisoGate) {
  check_combine(false, false, 5);
}
TEST(Mamba3GatesBwd, CombineSisoNorm) {
  check_combine(false, true, 6);
}
TEST(Mamba3GatesBwd, CombineMimoGate) {
  check_combine(true, false, 7);
}
TEST(Mamba3GatesBwd, CombineMimoNorm) {
  check_combine(true, true, 8);
}

}  // namespace
}  // namespace mamba::ops
