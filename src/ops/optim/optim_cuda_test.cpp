// Optimizer kernels on CUDA vs CPU: several AdamW steps on random tensors of odd sizes (same bits:
// both evaluate torch's formulas in double), the sum of squares of large tensors, scaling and
// zeroing. Label `cuda`.
#include <gtest/gtest.h>

#include <cmath>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/optim/optim.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

TEST(OptimCuda, AdamWMatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(5);
  for (int64_t n : {int64_t(1), int64_t(37), int64_t(4097), int64_t(300001)}) {
    Tensor p = testing::random_tensor({n}, rng), m = Tensor::zeros({n}), v = Tensor::zeros({n});
    Tensor gp = on_cuda(p), gm = on_cuda(m), gv = on_cuda(v);
    for (int64_t t = 1; t <= 4; ++t) {
      const Tensor g = testing::random_tensor({n}, rng, -3.0f, 3.0f);
      AdamWScalars s;
      s.decay = t % 2 ? 1.0 - 1e-3 * 0.1 : 1.0;
      s.step_size = 1e-3 / (1.0 - std::pow(0.9, double(t)));
      s.bc2_sqrt = std::sqrt(1.0 - std::pow(0.999, double(t)));
      adamw_update(exec, p, g, m, v, s);
      adamw_update(exec, gp, on_cuda(g), gm, gv, s);
    }
    EXPECT_LT(scaled_max_diff(gp, p), 1e-7f) << n;
    EXPECT_LT(scaled_max_diff(gm, m), 1e-7f) << n;
    EXPECT_LT(scaled_max_diff(gv, v), 1e-7f) << n;
  }
}

TEST(OptimCuda, SumSquaresScaleZero) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(6);
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(255), int64_t(1000003)}) {
    Tensor t = testing::random_tensor({n}, rng, -2.0f, 2.0f);
    Tensor gt = on_cuda(t);
    const double ref = sum_squares(exec, t);
    EXPECT_NEAR(sum_squares(exec, gt), ref, 1e-12 * std::max(1.0, ref)) << n;
    if (n == 0) continue;
    scale_(exec, t, 0.3719);
    scale_(exec, gt, 0.3719);
    EXPECT_EQ(scaled_max_diff(gt, t), 0.0f) << n;
    zero_(exec, gt);
    EXPECT_EQ(sum_squares(exec, gt), 0.0);
  }
}

// The global norm over many tensors finished on the device, and clipping that reads it there.
TEST(OptimCuda, SumSquaresTotalAndClip) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(7);
  std::vector<Tensor> cpu, gpu;
  for (int64_t n : {int64_t(37), int64_t(0), int64_t(1), int64_t(1000003), int64_t(255), int64_t(300001)}) {
    cpu.push_back(testing::random_tensor({n}, rng, -2.0f, 2.0f));
    gpu.push_back(on_cuda(cpu.back()));
  }
  const Tensor ref = sum_squares_total(exec, cpu), got = sum_squares_total(exec, gpu);
  ASSERT_EQ(got.device(), Device::cuda);
  const double r = *static_cast<const double*>(ref.raw());
  const double g = *static_cast<const double*>(got.to(Device::cpu).raw());
  EXPECT_NEAR(g, r, 1e-12 * r);
  const double norm = std::sqrt(r);
  for (double max_norm : {2.0 * norm, 0.0, 0.25 * norm}) {  // unchanged, only measured, scaled
    for (size_t k = 0; k < cpu.size(); ++k) {
      clip_scale_(exec, cpu[k], ref, max_norm);
      clip_scale_(exec, gpu[k], got, max_norm);
      if (cpu[k].numel() > 0) {
        EXPECT_LT(scaled_max_diff(gpu[k], cpu[k]), 1e-7f) << k << " " << max_norm;
      }
    }
  }
  EXPECT_EQ(*static_cast<const double*>(sum_squares_total(exec, {}).raw()), 0.0);
}

}  // namespace
}  // namespace mamba::ops
