// Mamba-3 gates backward on CUDA vs the CPU ops on random inputs. prepare: SISO (interleaved pairs)
// and MIMO ranks 2 and 4 (half-split pairs), n_groups 1 and 2, d_state 16 and 64, lengths 1, 7, 65,
// 200, all three rope modes; every dproj column and the five parameter gradients, which start
// from random values to check they are accumulated. combine: SISO and MIMO, gate or head norm, z a
// strided column view. Tolerance 1e-4 of the largest reference value: fp32 sums over at most a few
// hundred tokens in another order (the angles re-run with the device's tanh/log1p/exp). Label `cuda`.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/mamba3_gates/mamba3_gates.h"
#include "ops/mamba3_gates/mamba3_gates_testing.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::random_tensor;
using testing::scaled_max_diff;

constexpr float kTol = 1e-4f;

using Dims = testing_m3::GateDims;

Mamba3Gates make_gates(const Dims& d, Mamba3Rope rope, std::mt19937& rng) {
  return testing_m3::random_gates(d, rope, rng);
}

Mamba3Gates on_device(const Mamba3Gates& g) {
  return testing_m3::gates_on_cuda(g);
}

// Gradient holders with random starting values (accumulation), as the parameters' shapes.
Mamba3Gates random_grads(const Mamba3Gates& g, std::mt19937& rng) {
  Mamba3Gates d = g;
  for (Tensor* t : {&d.dt_bias, &d.B_bias, &d.C_bias, &d.B_norm_weight, &d.C_norm_weight})
    *t = random_tensor(t->shape(), rng);
  return d;
}

Mamba3Gates copy_grads(const Mamba3Gates& d, Device device) {
  Mamba3Gates c = d;
  for (Tensor* t : {&c.dt_bias, &c.B_bias, &c.C_bias, &c.B_norm_weight, &c.C_norm_weight})
    *t = t->copy().to(device);
  return c;
}

void check_prepare(const Dims& d, Mamba3Rope rope, std::mt19937& rng, float tol = kTol) {
  const std::string what = "B=" + std::to_string(d.batch) + " L=" + std::to_string(d.seq_len) +
                           " N=" + std::to_string(d.d_state) + " R=" + std::to_string(d.rank) +
                           " G=" + std::to_string(d.n_groups) + " rope " +
                           std::to_string(static_cast<int>(rope));
  const Mamba3Gates g = make_gates(d, rope, rng), gg = on_device(g);
  const int64_t S = g.n_rope_angles, H = d.n_heads, R = d.rank, N = d.d_state;
  const int64_t width = 2 * H * d.head_dim + 2 * R * d.n_groups * N + 3 * H + S;
  const Tensor proj = random_tensor({d.batch, d.seq_len, width}, rng, -2.0f, 2.0f);
  Mamba3ScanGrads ds;
  ds.dq = random_tensor({d.batch, d.seq_len, R, H, N}, rng);
  ds.dk = random_tensor({d.batch, d.seq_len, R, H, N}, rng);
  ds.dadt = random_tensor({d.batch, d.seq_len, H}, rng);
  ds.ddt = random_tensor({d.batch, d.seq_len, H}, rng);
  ds.dtrap = random_tensor({d.batch, d.seq_len, H}, rng);
  Mamba3ScanGrads gds = ds;
  for (Tensor* t : {&gds.dq, &gds.dk, &gds.dadt, &gds.ddt, &gds.dtrap}) *t = on_cuda(*t);
  const Mamba3Gates grads0 = random_grads(g, rng);
  Mamba3Gates cg = copy_grads(grads0, Device::cpu), gg_grads = copy_grads(grads0, Device::cuda);
  Tensor dproj = Tensor::zeros(proj.shape()), gdproj = Tensor::zeros(proj.shape(), DType::f32, Device::cuda);
  mamba3_prepare_bwd(exec, proj, g, ds, dproj, cg);
  mamba3_prepare_bwd(exec, on_cuda(proj), gg, gds, gdproj, gg_grads);
  EXPECT_LT(scaled_max_diff(gdproj, dproj), tol) << what << " dproj";
  EXPECT_LT(scaled_max_diff(gg_grads.dt_bias, cg.dt_bias), tol) << what << " dt_bias";
  EXPECT_LT(scaled_max_diff(gg_grads.B_bias, cg.B_bias), tol) << what << " B_bias";
  EXPECT_LT(scaled_max_diff(gg_grads.C_bias, cg.C_bias), tol) << what << " C_bias";
  EXPECT_LT(scaled_max_diff(gg_grads.B_norm_weight, cg.B_norm_weight), tol) << what << " B_norm_weight";
  EXPECT_LT(scaled_max_diff(gg_grads.C_norm_weight, cg.C_norm_weight), tol) << what << " C_norm_weight";
}

TEST(Mamba3GatesBwdCuda, PrepareMatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(21);
  for (const int64_t L : {1, 7, 65, 200})
    for (const Dims base : {Dims{2, 0, 4, 8, 16, 1, 1, false},
                            {2, 0, 4, 8, 64, 2, 1, false},
                            {1, 0, 4, 4, 16, 2, 2, true},
                            {2, 0, 2, 4, 64, 1, 2, true},
                            {1, 0, 4, 4, 64, 2, 4, true}})
      for (Mamba3Rope rope : {Mamba3Rope::data_dependent, Mamba3Rope::none, Mamba3Rope::data_independent}) {
        Dims d = base;
        d.seq_len = L;
        check_prepare(d, rope, rng);
      }
}

// The state-tracking shape: 2 heads, d_state 64, 64 × 160 = 10240 tokens, so every parameter sum
// spans many chunks of the two-stage reduction (and few columns: dt_bias has 2).
TEST(Mamba3GatesBwdCuda, PrepareManyTokens) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(23);
  check_prepare(Dims{64, 160, 2, 64, 64, 1, 1, false}, Mamba3Rope::data_dependent, rng);
}

// The angle scans (the angles re-run forward, the reverse sum of dφ over ranks) at the Table 5b
// shape (batch 256), over several tiles of tokens (2000 tokens, 40 angles in two blocks, rank 2),
// and with an angle count that does not divide the block (5 angles).
TEST(Mamba3GatesBwdCuda, PrepareAngleScanShapes) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(24);
  // The CPU's f32 running angle drifts by up to about half an ulp of 2π a token, the device's
  // double sum does not: the gradients within that drift (1e-6 a token) of the CPU's.
  auto tol = [](int64_t L) { return kTol + 1e-6f * static_cast<float>(L); };
  check_prepare(Dims{256, 160, 2, 64, 64, 1, 1, false}, Mamba3Rope::data_dependent, rng, tol(160));
  check_prepare(Dims{1, 2000, 2, 8, 160, 1, 2, true}, Mamba3Rope::data_dependent, rng, tol(2000));
  check_prepare(Dims{2, 700, 3, 8, 20, 1, 1, false}, Mamba3Rope::data_dependent, rng, tol(700));
  check_prepare(Dims{2, 700, 3, 8, 20, 1, 1, false}, Mamba3Rope::data_independent, rng, tol(700));
}

TEST(Mamba3GatesBwdCuda, CombineMatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(22);
  for (auto [batch, seq_len, rank, n_heads, head_dim] : {std::tuple{1, 1, 1, 2, 16},
                                                         {2, 7, 1, 3, 64},
                                                         {2, 65, 2, 2, 32},
                                                         {1, 200, 4, 4, 64},
                                                         {1, 7, 4, 2, 33}}) {
    const bool mimo = rank > 1;
    const int64_t di = n_heads * head_dim;
    const Tensor y = random_tensor({batch, seq_len, rank, n_heads, head_dim}, rng, -3.0f, 3.0f);
    const Tensor proj = random_tensor({batch, seq_len, 2 * di + 5}, rng, -3.0f, 3.0f);
    const Tensor z = proj.slice(-1, 0, di), gz = on_cuda(proj).slice(-1, 0, di);  // z is a column view
    const Tensor mz = mimo ? random_tensor({n_heads, rank, head_dim}, rng) : Tensor();
    const Tensor mo = mimo ? random_tensor({n_heads, rank, head_dim}, rng) : Tensor();
    const Tensor dout = random_tensor({batch, seq_len, di}, rng);
    for (bool norm : {false, true}) {
      const std::string what =
          "L=" + std::to_string(seq_len) + " rank " + std::to_string(rank) + " norm " + std::to_string(norm);
      const Tensor w = norm ? random_tensor({di}, rng) : Tensor();
      const Tensor dnw0 = norm ? random_tensor({di}, rng) : Tensor();
      const Tensor dmz0 = mimo ? random_tensor({n_heads, rank, head_dim}, rng) : Tensor();
      const Tensor dmo0 = mimo ? random_tensor({n_heads, rank, head_dim}, rng) : Tensor();
      auto copy_on = [](const Tensor& t, Device dev) { return t.defined() ? t.copy().to(dev) : t; };
      Tensor dz, dnw = copy_on(dnw0, Device::cpu), dmz = copy_on(dmz0, Device::cpu),
                 dmo = copy_on(dmo0, Device::cpu);
      Tensor gdz, gdnw = copy_on(dnw0, Device::cuda), gdmz = copy_on(dmz0, Device::cuda),
                  gdmo = copy_on(dmo0, Device::cuda);
      const Tensor dy = mamba3_combine_bwd(exec, dout, y, z, w, mz, mo, dz, dnw, dmz, dmo);
      const Tensor gdy = mamba3_combine_bwd(exec, on_cuda(dout), on_cuda(y), gz, on_cuda(w), on_cuda(mz),
                                            on_cuda(mo), gdz, gdnw, gdmz, gdmo);
      EXPECT_LT(scaled_max_diff(gdy, dy), kTol) << what << " dy";
      EXPECT_LT(scaled_max_diff(gdz, dz), kTol) << what << " dz";
      if (norm) {
        EXPECT_LT(scaled_max_diff(gdnw, dnw), kTol) << what << " dnorm_weight";
      }
      if (mimo) {
        EXPECT_LT(scaled_max_diff(gdmz, dmz), kTol) << what << " dmimo_z";
        EXPECT_LT(scaled_max_diff(gdmo, dmo), kTol) << what << " dmimo_o";
      }
    }
  }
}

}  // namespace
}  // namespace mamba::ops
