// Fused Mamba-3 decode step on CUDA vs the CPU composition (prepare -> scan step -> combine) and
// vs the same composition on CUDA: SISO (interleaved pairs) and MIMO ranks 2/4/8 (half-split),
// n_groups 1/2, d_state 16..256, head_dim 4..128, batch 1..40 (every launch variant), all three
// rope modes, with and without the head-wise output norm, from a random state, over several tokens
// (output and every state tensor compared after each). Label `cuda`.
#include <gtest/gtest.h>

#include <string>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/kernels.h"
#include "ops/mamba3_step/mamba3_step.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::random_tensor;
using testing::scaled_max_diff;

constexpr float kTolerance = 2e-5f;

struct Dims {
  int64_t batch, n_heads, head_dim, d_state, n_groups, rank;
  bool mimo, outproj_norm;
};

struct Layer {
  Mamba3Gates g;
  Mamba3StepParams w;
};

Layer make_layer(const Dims& d, Mamba3Rope rope, std::mt19937& rng) {
  const int64_t H = d.n_heads, R = d.rank, P = d.head_dim, N = d.d_state;
  Layer l;
  l.g = {H,
         P,
         N,
         d.n_groups,
         R,
         N / 4,  // rope_fraction 0.5
         1e-4f,
         d.mimo,
         rope,
         random_tensor({H}, rng),
         random_tensor({H, R, N}, rng),
         random_tensor({H, R, N}, rng),
         random_tensor({N}, rng, 0.5f, 1.5f),
         random_tensor({N}, rng, 0.5f, 1.5f)};
  l.w.D = random_tensor({H}, rng);
  if (d.mimo) {
    l.w.mimo_x = random_tensor({H, R, P}, rng);
    l.w.mimo_z = random_tensor({H, R, P}, rng);
    l.w.mimo_o = random_tensor({H, R, P}, rng);
  }
  if (d.outproj_norm) l.w.norm_weight = random_tensor({H * P}, rng, 0.5f, 1.5f);
  return l;
}

Layer on_device(Layer l) {
  for (Tensor* t : {&l.g.dt_bias, &l.g.B_bias, &l.g.C_bias, &l.g.B_norm_weight, &l.g.C_norm_weight, &l.w.D,
                    &l.w.mimo_x, &l.w.mimo_z, &l.w.mimo_o, &l.w.norm_weight})
    *t = on_cuda(*t);
  return l;
}

struct StepState {
  Tensor angle;
  Mamba3ScanState scan;
  StepState to(Device device) const {
    return {angle.to(device), {scan.ssm.to(device), scan.k_prev.to(device), scan.v_prev.to(device)}};
  }
};

TEST(Mamba3StepCuda, FusedMatchesComposition) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(11);
  for (const Dims d : {Dims{1, 2, 4, 16, 1, 1, false, false},
                       {3, 4, 8, 32, 2, 1, false, true},
                       {2, 4, 64, 128, 1, 1, false, false},
                       {2, 3, 64, 128, 1, 1, false, true},
                       {1, 2, 128, 256, 2, 1, false, false},
                       {2, 4, 16, 64, 2, 2, true, false},
                       {1, 2, 64, 128, 1, 4, true, true},
                       {2, 2, 8, 16, 2, 8, true, false},
                       // batch × heads >= the SM count: one block per head, state in registers
                       // (the small ones above split a head over a 2-block cluster on sm_90)
                       {40, 4, 64, 128, 1, 1, false, true},
                       {36, 4, 64, 128, 1, 2, true, true},
                       {1, 2, 128, 128, 1, 1, false, true},
                       // batch × heads >= 8 per SM, SISO without the head norm: the streaming path
                       // (prepare, state update, key store)
                       {300, 4, 64, 128, 1, 1, false, false}}) {
    for (Mamba3Rope rope : {Mamba3Rope::data_dependent, Mamba3Rope::none, Mamba3Rope::data_independent}) {
      const std::string what = "P=" + std::to_string(d.head_dim) + " N=" + std::to_string(d.d_state) +
                               " R=" + std::to_string(d.rank) + " G=" + std::to_string(d.n_groups) +
                               " norm " + std::to_string(d.outproj_norm) + " rope " +
                               std::to_string(int(rope));
      const Layer cpu = make_layer(d, rope, rng), gpu = on_device(cpu);
      const int64_t H = d.n_heads, P = d.head_dim, N = d.d_state, R = d.rank, S = N / 4;
      const int64_t width = 2 * H * P + 2 * R * d.n_groups * N + 3 * H + S;
      StepState ref{random_tensor({d.batch, H, S}, rng, 0.0f, 6.0f),
                    {random_tensor({d.batch, H, P, N}, rng), random_tensor({d.batch, R, H, N}, rng),
                     random_tensor({d.batch, H, P}, rng)}};
      StepState fused = ref.to(Device::cuda), composed = ref.to(Device::cuda);
      for (int t = 0; t < 4; ++t) {
        // Rows of a wider buffer: the kernel reads strided proj rows.
        const Tensor wide = random_tensor({d.batch, width + 3}, rng, -2.0f, 2.0f);
        const Tensor proj = wide.slice(1, 0, width);
        const Tensor o_ref = mamba3_step_composed(exec, proj.contiguous(), cpu.g, cpu.w, ref.angle, ref.scan);
        const Tensor proj_gpu = on_cuda(wide).slice(1, 0, width);
        Tensor o_fused;
        ASSERT_TRUE(
            cuda_kernels().mamba3_step.step(exec, proj_gpu, gpu.g, gpu.w, fused.angle, fused.scan, o_fused))
            << what;
        const Tensor o_comp =
            mamba3_step_composed(exec, proj_gpu.contiguous(), gpu.g, gpu.w, composed.angle, composed.scan);
        const std::string at = what + " token " + std::to_string(t);
        EXPECT_LT(scaled_max_diff(o_fused, o_ref), kTolerance) << at;
        EXPECT_LT(scaled_max_diff(o_fused, o_comp.to(Device::cpu)), kTolerance) << at;
        EXPECT_LT(scaled_max_diff(fused.angle, ref.angle), kTolerance) << at;
        EXPECT_LT(scaled_max_diff(fused.scan.ssm, ref.scan.ssm), kTolerance) << at;
        EXPECT_LT(scaled_max_diff(fused.scan.k_prev, ref.scan.k_prev), kTolerance) << at;
        EXPECT_LT(scaled_max_diff(fused.scan.v_prev, ref.scan.v_prev), kTolerance) << at;
      }
    }
  }
}

TEST(Mamba3StepCuda, DispatchTakesTheFusedKernel) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(5);
  const Dims d{2, 2, 64, 128, 1, 1, false, false};
  const Layer gpu = on_device(make_layer(d, Mamba3Rope::data_dependent, rng));
  const int64_t width = 2 * 2 * 64 + 2 * 128 + 3 * 2 + 32;
  StepState a{random_tensor({2, 2, 32}, rng),
              {random_tensor({2, 2, 64, 128}, rng), random_tensor({2, 1, 2, 128}, rng),
               random_tensor({2, 2, 64}, rng)}};
  StepState b1 = a.to(Device::cuda), b2 = a.to(Device::cuda);
  const Tensor proj = on_cuda(random_tensor({2, width}, rng));
  Tensor direct;
  ASSERT_TRUE(cuda_kernels().mamba3_step.step(exec, proj, gpu.g, gpu.w, b1.angle, b1.scan, direct));
  const Tensor via_op = mamba3_step(exec, proj, gpu.g, gpu.w, b2.angle, b2.scan);
  EXPECT_EQ(testing::max_abs_diff(via_op.to(Device::cpu), direct.to(Device::cpu)), 0.0f);
}

}  // namespace
}  // namespace mamba::ops
