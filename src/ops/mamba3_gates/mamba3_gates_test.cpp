// Mamba-3 gates vs a direct double-precision evaluation of SPEC §3.3 (both pair conventions,
// groups, MIMO rank 2) and of the §3.4 output combination; angle state continuity across calls.
#include "ops/mamba3_gates/mamba3_gates.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "exec_testing.h"
#include "testing.h"

namespace mamba::ops {
namespace {

struct GateCase {
  Mamba3Gates g;
  Tensor proj;
};

GateCase make(std::mt19937& rng, bool mimo, int64_t batch, int64_t seq_len) {
  GateCase s;
  const int64_t H = 4, P = 3, N = 8, G = 2, R = mimo ? 2 : 1, S = 2;
  s.g = {H,
         P,
         N,
         G,
         R,
         S,
         1e-4f,
         mimo,
         Mamba3Rope::data_dependent,
         testing::random_tensor({H}, rng),
         testing::random_tensor({H, R, N}, rng),
         testing::random_tensor({H, R, N}, rng),
         testing::random_tensor({N}, rng),
         testing::random_tensor({N}, rng)};
  s.proj = testing::random_tensor({batch, seq_len, 2 * H * P + 2 * R * G * N + 3 * H + S}, rng, -2, 2);
  return s;
}

TEST(Mamba3Gates, PrepareMatchesDefinition) {
  std::mt19937 rng(13);
  for (bool mimo : {false, true}) {
    const int64_t B = 2, L = 5;
    GateCase s = make(rng, mimo, B, L);
    const Mamba3Gates& g = s.g;
    const int64_t H = g.n_heads, N = g.d_state, R = g.rank, G = g.n_groups, S = g.n_rope_angles;
    const int64_t off_b = 2 * H * g.head_dim, off_c = off_b + R * G * N, off_dt = off_c + R * G * N;
    Tensor angle = Tensor::zeros({B, H, S});
    Mamba3ScanArgs a;
    mamba3_prepare_fwd(exec, s.proj, g, angle, a);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<double> phi(H * S, 0.0);
      for (int64_t t = 0; t < L; ++t) {
        const float* row = s.proj.f32() + (b * L + t) * s.proj.size(2);
        for (int64_t h = 0; h < H; ++h) {
          const double dd_a = row[off_dt + H + h];
          const double f = dd_a >= 0 ? 1 + dd_a : 1 / (1 - dd_a);
          const double dt = std::log1p(std::exp(double(row[off_dt + h]) + g.dt_bias.f32()[h]));
          const int64_t i3 = (b * L + t) * H + h;
          EXPECT_NEAR(a.adt.f32()[i3], -std::max(f, 1e-4) * dt, 1e-5);
          EXPECT_NEAR(a.trap.f32()[i3], 1 / (1 + std::exp(-double(row[off_dt + 2 * H + h]))), 1e-6);
          for (int64_t i = 0; i < S; ++i)
            phi[h * S + i] += std::numbers::pi * std::tanh(double(row[off_dt + 3 * H + i])) * dt;
          const int64_t grp = h / (H / G);
          for (int64_t r = 0; r < R; ++r) {
            const float* braw = row + off_b + (r * G + grp) * N;
            double ss = 0;
            for (int64_t n = 0; n < N; ++n) ss += double(braw[n]) * braw[n];
            std::vector<double> k(N);
            for (int64_t n = 0; n < N; ++n)
              k[n] = braw[n] / std::sqrt(ss / N + 1e-5) * g.B_norm_weight.f32()[n] +
                     g.B_bias.f32()[(h * R + r) * N + n];
            for (int64_t i = 0; i < S; ++i) {
              const int64_t i0 = mimo ? i : 2 * i, i1 = mimo ? i + N / 2 : 2 * i + 1;
              const double p = phi[h * S + i], x0 = k[i0], x1 = k[i1];
              k[i0] = x0 * std::cos(p) - x1 * std::sin(p);
              k[i1] = x0 * std::sin(p) + x1 * std::cos(p);
            }
            for (int64_t n = 0; n < N; ++n)
              EXPECT_NEAR(a.k.f32()[(((b * L + t) * R + r) * H + h) * N + n], k[n], 2e-4) << "mimo " << mimo;
          }
        }
      }
      // The state holds φ mod 2π.
      for (int64_t i = 0; i < H * S; ++i) {
        const double wrapped = phi[i] - 2 * std::numbers::pi * std::floor(phi[i] / (2 * std::numbers::pi));
        EXPECT_NEAR(angle.f32()[b * H * S + i], wrapped, 1e-4);
      }
    }
  }
}

TEST(Mamba3Gates, SplitCallsContinueTheAngle) {
  std::mt19937 rng(14);
  GateCase s = make(rng, false, 1, 9);
  Tensor a1 = Tensor::zeros({1, 4, 2}), a2 = Tensor::zeros({1, 4, 2});
  Mamba3ScanArgs whole, first, second;
  mamba3_prepare_fwd(exec, s.proj, s.g, a1, whole);
  mamba3_prepare_fwd(exec, s.proj.slice(1, 0, 4).contiguous(), s.g, a2, first);
  mamba3_prepare_fwd(exec, s.proj.slice(1, 4, 9).contiguous(), s.g, a2, second);
  EXPECT_LT(testing::max_abs_diff(whole.q.slice(1, 4, 9).contiguous(), second.q), 1e-5f);
  EXPECT_LT(testing::max_abs_diff(a1, a2), 1e-5f);
}

TEST(Mamba3Gates, CombineMatchesDefinition) {
  std::mt19937 rng(15);
  const int64_t B = 2, L = 3, R = 2, H = 2, P = 4;
  Tensor y = testing::random_tensor({B, L, R, H, P}, rng), z = testing::random_tensor({B, L, H * P}, rng);
  Tensor w = testing::random_tensor({H * P}, rng), mz = testing::random_tensor({H, R, P}, rng),
         mo = testing::random_tensor({H, R, P}, rng);
  for (bool norm : {false, true}) {
    Tensor o = mamba3_combine_fwd(exec, y, z, norm ? w : Tensor(), mz, mo);
    for (int64_t bt = 0; bt < B * L; ++bt)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t p = 0; p < P; ++p) {
          double acc = 0;
          for (int64_t r = 0; r < R; ++r) {
            const float* yr = y.f32() + ((bt * R + r) * H + h) * P;
            double ss = 0;
            for (int64_t i = 0; i < P; ++i) ss += double(yr[i]) * yr[i];
            double v = yr[p] * (norm ? w.f32()[h * P + p] / std::sqrt(ss / P + 1e-5) : 1.0);
            const double zz = double(z.f32()[bt * H * P + h * P + p]) * mz.f32()[(h * R + r) * P + p];
            acc += mo.f32()[(h * R + r) * P + p] * v * zz / (1 + std::exp(-zz));
          }
          EXPECT_NEAR(o.f32()[bt * H * P + h * P + p], acc, 1e-5);
        }
  }
}

}  // namespace
}  // namespace mamba::ops
