// Mamba-3 gates on CUDA vs the CPU ops: SISO (interleaved pairs) and MIMO ranks 1/2/4/8
// (half-split pairs), 2..64 heads, n_groups 1..4, d_state 15..256, all three rope modes, the angle
// state carried across calls; bf16 q/k (bf16_operands) against the f32 ones rounded; combine
// with and without the head-wise norm. Label `cuda`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

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

using Dims = testing_m3::GateDims;

Mamba3Gates make_gates(const Dims& d, Mamba3Rope rope, std::mt19937& rng) {
  return testing_m3::random_gates(d, rope, rng);
}

Mamba3Gates on_device(const Mamba3Gates& g) {
  return testing_m3::gates_on_cuda(g);
}

TEST(Mamba3GatesCuda, PrepareMatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(3);
  for (const Dims d : {Dims{1, 1, 2, 4, 16, 1, 1, false},
                       {2, 23, 4, 8, 32, 2, 1, false},
                       {1, 9, 2, 4, 256, 1, 1, false},
                       {2, 13, 4, 8, 64, 2, 2, true},
                       {1, 7, 2, 4, 128, 1, 4, true},
                       {2, 5, 2, 4, 16, 2, 8, true},
                       {1, 6, 2, 4, 64, 1, 1, true},
                       // Many heads per block (the q/k kernel loops over (head, pair) units),
                       // groups of several heads, rank 2, odd lengths (the angle kernel's
                       // look-ahead groups of 16 tokens end mid-group), odd d_state.
                       {1, 37, 64, 64, 128, 1, 1, false},
                       {2, 17, 8, 16, 128, 1, 1, false},
                       {1, 11, 6, 8, 64, 2, 1, false},
                       {2, 9, 8, 8, 32, 4, 2, true},
                       {1, 19, 6, 8, 64, 3, 2, false},
                       {1, 7, 3, 8, 15, 1, 1, false},
                       {2, 5, 3, 8, 15, 1, 2, true},
                       // Rows (batch·seq_len·rank) >= 2 per SM: one q/k block per row over all heads
                       // (fewer rows split the heads over blocks).
                       {3, 100, 4, 8, 32, 1, 1, false},
                       {2, 150, 8, 16, 64, 2, 2, true},
                       // One token of rank 1 (decode): the q/k kernel also advances the angle.
                       {5, 1, 64, 16, 128, 1, 1, false},
                       {300, 1, 8, 16, 64, 2, 1, false}}) {
    for (Mamba3Rope rope : {Mamba3Rope::data_dependent, Mamba3Rope::none, Mamba3Rope::data_independent}) {
      const std::string what = "H=" + std::to_string(d.n_heads) + " N=" + std::to_string(d.d_state) +
                               " R=" + std::to_string(d.rank) + " G=" + std::to_string(d.n_groups) +
                               " L=" + std::to_string(d.seq_len) + " rope " + std::to_string(int(rope));
      const Mamba3Gates g = make_gates(d, rope, rng), gg = on_device(g);
      const int64_t S = g.n_rope_angles;
      const int64_t width =
          2 * d.n_heads * d.head_dim + 2 * d.rank * d.n_groups * d.d_state + 3 * d.n_heads + S;
      const Tensor proj = random_tensor({d.batch, d.seq_len, width}, rng, -2.0f, 2.0f);
      const Tensor angle0 = random_tensor({d.batch, d.n_heads, S}, rng, 0.0f, 6.0f);
      // Two calls (the second continues the angle state), CPU and CUDA.
      Tensor angle = angle0.copy(), gangle = on_cuda(angle0);
      for (int call = 0; call < 2; ++call) {
        Mamba3ScanArgs a, ga;
        mamba3_prepare_fwd(exec, proj, g, angle, a);
        mamba3_prepare_fwd(exec, on_cuda(proj), gg, gangle, ga);
        EXPECT_LT(scaled_max_diff(ga.adt, a.adt), 1e-5f) << what;
        EXPECT_LT(scaled_max_diff(ga.dt, a.dt), 1e-6f) << what;
        EXPECT_LT(scaled_max_diff(ga.trap, a.trap), 1e-6f) << what;
        EXPECT_LT(scaled_max_diff(ga.q, a.q), 1e-4f) << what;
        EXPECT_LT(scaled_max_diff(ga.k, a.k), 1e-4f) << what;
        EXPECT_LT(scaled_max_diff(gangle, angle), 1e-4f) << what << " call " << call;
      }
    }
  }
}

// The angle scan (a block per (batch, head) over the tokens, sums in double) at the Table 5b shape
// (batch 256, 160 tokens, 2 heads, 16 angles), over several tiles of tokens (3000 tokens), with
// angles split over two blocks (40) and a count that does not divide the block (5): q and k
// against the CPU (within its f32 angle's drift), and the advanced angle state against the host's
// double sum of the increments
// reduced by the CPU's f32 2π (compared mod 2π), within a bound growing as the square root of the
// length (each f32 increment's own rounding).
TEST(Mamba3GatesCuda, AngleScanLongAndWide) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(6);
  for (const Dims d : {Dims{256, 160, 2, 64, 64, 1, 1, false},
                       {2, 3000, 3, 8, 160, 1, 1, false},
                       {1, 1025, 2, 8, 20, 1, 1, false},
                       {3, 2, 1, 8, 16, 1, 1, false}}) {
    for (Mamba3Rope rope : {Mamba3Rope::data_dependent, Mamba3Rope::data_independent}) {
      const std::string what = "B=" + std::to_string(d.batch) + " L=" + std::to_string(d.seq_len) +
                               " N=" + std::to_string(d.d_state) + " rope " + std::to_string(int(rope));
      const Mamba3Gates g = make_gates(d, rope, rng), gg = on_device(g);
      const int64_t S = g.n_rope_angles, H = d.n_heads, L = d.seq_len;
      const int64_t off_dt = 2 * H * d.head_dim + 2 * d.rank * d.n_groups * d.d_state,
                    width = off_dt + 3 * H + S;
      const Tensor proj = random_tensor({d.batch, L, width}, rng, -2.0f, 2.0f);
      const Tensor angle0 = random_tensor({d.batch, H, S}, rng, 0.0f, 6.0f);
      Tensor angle = angle0.copy(), gangle = on_cuda(angle0);
      Mamba3ScanArgs a, ga;
      mamba3_prepare_fwd(exec, proj, g, angle, a);
      mamba3_prepare_fwd(exec, on_cuda(proj), gg, gangle, ga);
      // The CPU's f32 running angle drifts by up to about half an ulp of 2π a token (with a fixed
      // frequency, in one direction: 6e-4 over 3000 tokens), the device's sum does not: q and k
      // within that drift (1e-6 a token) of the CPU's.
      const float qk_tol = 1e-4f + 1e-6f * static_cast<float>(L);
      EXPECT_LT(scaled_max_diff(ga.q, a.q), qk_tol) << what;
      EXPECT_LT(scaled_max_diff(ga.k, a.k), qk_tol) << what;
      const std::vector<float> pr = proj.to_vector(), a0 = angle0.to_vector(), got = gangle.to_vector(),
                               bias = g.dt_bias.to_vector();
      const double two_pi = static_cast<double>(2.0f * std::numbers::pi_v<float>);
      const double tol = 2e-5 * std::sqrt(static_cast<double>(L)) + 1e-5;
      double worst = 0.0;
      for (int64_t b = 0; b < d.batch; ++b)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t i = 0; i < S; ++i) {
            double phi = a0[(b * H + h) * S + i];
            for (int64_t t = 0; t < L; ++t) {
              const float* row = pr.data() + (b * L + t) * width;
              if (rope == Mamba3Rope::data_dependent) {
                const double v = static_cast<double>(row[off_dt + h]) + bias[h];
                const double delta = v > 20.0 ? v : std::log1p(std::exp(v));
                phi += std::numbers::pi * std::tanh(static_cast<double>(row[off_dt + 3 * H + i])) * delta;
              } else {
                phi += std::pow(10000.0, -static_cast<double>(i) / static_cast<double>(S));
              }
            }
            phi -= two_pi * std::floor(phi / two_pi);
            const double diff = std::abs(phi - got[(b * H + h) * S + i]);
            worst = std::max(worst, std::min(diff, two_pi - diff));
          }
      EXPECT_LT(worst, tol) << what;
    }
  }
}

// bf16_operands with fast_bf16: q and k come out bf16, each the round-to-nearest of the f32
// prepare's value (what the tensor-core scan's own conversion would give), the other outputs and
// the angle state unchanged. Without fast_bf16, or on the CPU, the flag changes nothing.
TEST(Mamba3GatesCuda, PrepareBf16OperandsRoundF32) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(5);
  for (const Dims d : {Dims{2, 37, 8, 64, 128, 1, 1, false}, {1, 21, 4, 64, 128, 2, 2, true}}) {
    for (Mamba3Rope rope : {Mamba3Rope::data_dependent, Mamba3Rope::none, Mamba3Rope::data_independent}) {
      const std::string what = "R=" + std::to_string(d.rank) + " rope " + std::to_string(int(rope));
      const Mamba3Gates g = make_gates(d, rope, rng), gg = on_device(g);
      const int64_t S = g.n_rope_angles;
      const int64_t width =
          2 * d.n_heads * d.head_dim + 2 * d.rank * d.n_groups * d.d_state + 3 * d.n_heads + S;
      const Tensor proj = on_cuda(random_tensor({d.batch, d.seq_len, width}, rng, -2.0f, 2.0f));
      const Tensor angle0 = on_cuda(random_tensor({d.batch, d.n_heads, S}, rng, 0.0f, 6.0f));
      Tensor angle32 = angle0.copy(), angle16 = angle0.copy(), angle_flag_only = angle0.copy();
      Mamba3ScanArgs a32, a16, flag_only;
      a32.fast_bf16 = true;
      a16.fast_bf16 = a16.bf16_operands = true;
      flag_only.bf16_operands = true;  // without fast_bf16: f32 as before
      mamba3_prepare_fwd(exec, proj, gg, angle32, a32);
      mamba3_prepare_fwd(exec, proj, gg, angle16, a16);
      mamba3_prepare_fwd(exec, proj, gg, angle_flag_only, flag_only);
      ASSERT_EQ(a16.q.dtype(), DType::bf16) << what;
      ASSERT_EQ(a16.k.dtype(), DType::bf16) << what;
      EXPECT_EQ(a16.q.shape(), a32.q.shape()) << what;
      EXPECT_EQ(a16.q.to_vector(), a32.q.to(DType::bf16).to_vector()) << what << " q";
      EXPECT_EQ(a16.k.to_vector(), a32.k.to(DType::bf16).to_vector()) << what << " k";
      EXPECT_EQ(flag_only.q.dtype(), DType::f32) << what;
      EXPECT_EQ(flag_only.q.to_vector(), a32.q.to_vector()) << what << " q without fast_bf16";
      for (auto [x, y] :
           {std::pair{&a16.adt, &a32.adt}, {&a16.dt, &a32.dt}, {&a16.trap, &a32.trap}, {&angle16, &angle32}})
        EXPECT_EQ(x->to_vector(), y->to_vector()) << what;
    }
  }
  // The CPU prepare ignores the flag.
  const Dims d{1, 5, 2, 8, 16, 1, 1, false};
  const Mamba3Gates g = make_gates(d, Mamba3Rope::data_dependent, rng);
  const Tensor proj = random_tensor({1, 5, 2 * 2 * 8 + 2 * 16 + 3 * 2 + 4}, rng);
  Tensor angle = Tensor::zeros({1, 2, 4});
  Mamba3ScanArgs a;
  a.fast_bf16 = a.bf16_operands = true;
  mamba3_prepare_fwd(exec, proj, g, angle, a);
  EXPECT_EQ(a.q.dtype(), DType::f32);
  EXPECT_EQ(a.k.dtype(), DType::f32);
}

TEST(Mamba3GatesCuda, CombineMatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(4);
  for (auto [batch, seq_len, rank, n_heads, head_dim] : {std::tuple{1, 1, 1, 2, 16},
                                                         {2, 9, 1, 3, 64},
                                                         {2, 7, 2, 2, 32},
                                                         {1, 5, 4, 4, 64},
                                                         {1, 3, 8, 2, 33},
                                                         {2, 13, 1, 64, 64},
                                                         {1, 3, 2, 5, 100}}) {
    const bool mimo = rank > 1;
    const int64_t di = n_heads * head_dim;
    const Tensor y = random_tensor({batch, seq_len, rank, n_heads, head_dim}, rng, -3.0f, 3.0f);
    const Tensor proj = random_tensor({batch, seq_len, 2 * di + 5}, rng, -3.0f, 3.0f);
    const Tensor z = proj.slice(-1, 0, di), gz = on_cuda(proj).slice(-1, 0, di);  // z is a column view
    const Tensor mz = mimo ? random_tensor({n_heads, rank, head_dim}, rng) : Tensor();
    const Tensor mo = mimo ? random_tensor({n_heads, rank, head_dim}, rng) : Tensor();
    for (bool norm : {false, true}) {
      const Tensor w = norm ? random_tensor({di}, rng) : Tensor();
      const Tensor ref = mamba3_combine_fwd(exec, y, z, w, mz, mo);
      EXPECT_LT(scaled_max_diff(
                    mamba3_combine_fwd(exec, on_cuda(y), gz, on_cuda(w), on_cuda(mz), on_cuda(mo)), ref),
                1e-5f)
          << "rank " << rank << " norm " << norm;
    }
  }
}

}  // namespace
}  // namespace mamba::ops
