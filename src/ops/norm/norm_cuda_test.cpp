// Norms on CUDA vs the CPU ops: RMSNorm, LayerNorm (with/without bias) and the gated, grouped
// RMSNorm in both gate orders, and decode's fused residual add + norm, over odd widths and batches.
// Label `cuda`.
#include <gtest/gtest.h>

#include <string>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/elementwise/elementwise.h"
#include "ops/kernels.h"
#include "ops/norm/norm.h"
#include "ops/norm/norm_cuda_testing.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

TEST(NormCuda, RmsAndLayerNorm) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (auto [rows, n] : {std::pair{1, 7}, {3, 64}, {17, 769}, {2, 4096}}) {
    const Tensor x = testing::random_tensor({rows, 1, n}, rng, -3.0f, 3.0f);
    const Tensor w = testing::random_tensor({n}, rng), b = testing::random_tensor({n}, rng);
    EXPECT_LT(scaled_max_diff(rms_norm(exec, on_cuda(x), on_cuda(w), 1e-5f), rms_norm(exec, x, w, 1e-5f)),
              1e-5f)
        << n;
    EXPECT_LT(scaled_max_diff(layer_norm(exec, on_cuda(x), on_cuda(w), on_cuda(b), 1e-5f),
                              layer_norm(exec, x, w, b, 1e-5f)),
              1e-5f)
        << n;
    EXPECT_LT(scaled_max_diff(layer_norm(exec, on_cuda(x), on_cuda(w), Tensor(), 1e-5f),
                              layer_norm(exec, x, w, Tensor(), 1e-5f)),
              1e-5f)
        << n;
  }
}

TEST(NormCuda, GatedGrouped) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  // Groups up to 2048 channels keep their values in registers; 4096 takes the re-reading kernel.
  for (auto [rows, n, group] :
       {std::tuple{1, 16, 16}, {5, 96, 32}, {3, 1536, 768}, {2, 33, 11}, {1, 2048, 2048}, {1, 4096, 4096}}) {
    const Tensor x = testing::random_tensor({rows, 2, n}, rng, -2.0f, 2.0f);
    const Tensor z = testing::random_tensor({rows, 2, n}, rng, -2.0f, 2.0f);
    const Tensor w = testing::random_tensor({n}, rng);
    for (bool before : {false, true}) {
      const Tensor ref = rms_norm_gated(exec, x, z, w, group, before, 1e-5f);
      EXPECT_LT(scaled_max_diff(
                    rms_norm_gated(exec, on_cuda(x), on_cuda(z), on_cuda(w), group, before, 1e-5f), ref),
                1e-5f)
          << n << "/" << group << " before " << before;
    }
    // A strided z (column view) is made contiguous on the device.
    const Tensor wide = testing::random_tensor({rows, 2, n + 5}, rng);
    const Tensor ref = rms_norm_gated(exec, x, wide.slice(-1, 5, n + 5).contiguous(), w, group, false, 1e-5f);
    EXPECT_LT(scaled_max_diff(rms_norm_gated(exec, on_cuda(x), on_cuda(wide).slice(-1, 5, n + 5), on_cuda(w),
                                             group, false, 1e-5f),
                              ref),
              1e-5f);
  }
}

// Groups of at most 256 channels take a warp per group: the same bits as the one-block-per-group
// kernel (its sums in block_sum's order), over the cases of norm_cuda_testing.h.
TEST(NormCuda, GatedShortRowsMatchBlockKernel) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(4);
  const auto& k = cuda_kernels().norm;
  testing_norm::for_each_short_row_case(rng, [&](const testing_norm::ShortRowCase& c) {
    const Tensor got = k.rms_norm_gated(c.x, c.z, c.w, c.group, c.norm_before_gate, 1e-5f);
    const Tensor ref = k.rms_norm_gated_per_block(c.x, c.z, c.w, c.group, c.norm_before_gate, 1e-5f);
    EXPECT_LT(scaled_max_diff(got, ref), 1e-6f) << c.what;
    EXPECT_EQ(got.to_vector(), ref.to_vector()) << c.what;
  });
}

// Decode's fused residual add + norm: the same bits as add_ then the norm on the device (same
// reduction order), the CPU values within rounding, the residual updated in place; no x too.
TEST(NormCuda, AddNormFused) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(3);
  for (auto [rows, n] : {std::pair{1, 2048}, {3, 769}, {4, 64}, {2, 5}}) {
    const Tensor r0 = testing::random_tensor({rows, n}, rng, -3.0f, 3.0f);
    const Tensor x = testing::random_tensor({rows, n}, rng);
    const Tensor w = testing::random_tensor({n}, rng), b = testing::random_tensor({n}, rng);
    for (bool layer : {false, true}) {
      for (bool with_x : {true, false}) {
        const std::string what = std::to_string(rows) + "x" + std::to_string(n) +
                                 (layer ? " layer" : " rms") + (with_x ? " +x" : " no x");
        Tensor unfused_r = on_cuda(r0).copy();
        if (with_x) add_(exec, unfused_r, on_cuda(x));
        const Tensor unfused = layer ? layer_norm(exec, unfused_r, on_cuda(w), on_cuda(b), 1e-5f)
                                     : rms_norm(exec, unfused_r, on_cuda(w), 1e-5f);
        Tensor r = on_cuda(r0).copy();
        const Tensor xin = with_x ? on_cuda(x) : Tensor();
        const Tensor y = layer ? add_layer_norm_(exec, r, xin, on_cuda(w), on_cuda(b), 1e-5f)
                               : add_rms_norm_(exec, r, xin, on_cuda(w), 1e-5f);
        EXPECT_EQ(testing::max_abs_diff(r.to(Device::cpu), unfused_r.to(Device::cpu)), 0.0f) << what;
        EXPECT_EQ(testing::max_abs_diff(y.to(Device::cpu), unfused.to(Device::cpu)), 0.0f) << what;
        Tensor cpu_r = r0.copy();
        const Tensor cpu_y = layer ? add_layer_norm_(exec, cpu_r, with_x ? x : Tensor(), w, b, 1e-5f)
                                   : add_rms_norm_(exec, cpu_r, with_x ? x : Tensor(), w, 1e-5f);
        EXPECT_LT(scaled_max_diff(y, cpu_y), 1e-5f) << what;
        EXPECT_LT(scaled_max_diff(r, cpu_r), 1e-6f) << what;
      }
    }
  }
}

}  // namespace
}  // namespace mamba::ops
