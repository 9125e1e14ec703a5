// Norm backward on CUDA vs the CPU ops: RMSNorm, LayerNorm (with and without a bias gradient)
// and the gated, grouped RMSNorm in both gate orders and without a gate, over odd widths, row
// counts that are not multiples of 32 and strided inputs; weight gradients accumulate into
// nonzero values. Label `cuda`.
#include <gtest/gtest.h>

#include <string>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/kernels.h"
#include "ops/norm/norm.h"
#include "ops/norm/norm_cuda_testing.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

TEST(NormBwdCuda, RmsAndLayerNorm) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (auto [rows, n] : {std::pair{1, 7}, {3, 64}, {17, 769}, {2, 4096}, {45, 33}}) {
    const Tensor x = testing::random_tensor({rows, 1, n}, rng, -3.0f, 3.0f);
    const Tensor dy = testing::random_tensor({rows, 1, n}, rng);
    const Tensor w = testing::random_tensor({n}, rng);
    {
      Tensor dw = testing::random_tensor({n}, rng), gdw = on_cuda(dw);
      const Tensor gdx = rms_norm_bwd(exec, on_cuda(dy), on_cuda(x), on_cuda(w), 1e-5f, gdw);
      const Tensor dx = rms_norm_bwd(exec, dy, x, w, 1e-5f, dw);
      EXPECT_LT(scaled_max_diff(gdx, dx), 1e-5f) << "rms " << n;
      EXPECT_LT(scaled_max_diff(gdw, dw), 1e-5f) << "rms " << n;
    }
    for (bool with_bias : {false, true}) {
      Tensor dw = testing::random_tensor({n}, rng), gdw = on_cuda(dw);
      Tensor db = with_bias ? testing::random_tensor({n}, rng) : Tensor(), gdb = on_cuda(db);
      const Tensor gdx = layer_norm_bwd(exec, on_cuda(dy), on_cuda(x), on_cuda(w), 1e-5f, gdw, gdb);
      const Tensor dx = layer_norm_bwd(exec, dy, x, w, 1e-5f, dw, db);
      EXPECT_LT(scaled_max_diff(gdx, dx), 1e-5f) << "layer " << n;
      EXPECT_LT(scaled_max_diff(gdw, dw), 1e-5f) << "layer " << n;
      if (with_bias) {
        EXPECT_LT(scaled_max_diff(gdb, db), 1e-5f) << "layer " << n;
      }
    }
  }
}

TEST(NormBwdCuda, GatedGrouped) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  for (auto [rows, n, group] :
       {std::tuple{1, 16, 16}, {5, 96, 32}, {3, 1536, 768}, {2, 33, 11}, {37, 40, 8}}) {
    const Tensor x = testing::random_tensor({rows, 2, n}, rng, -2.0f, 2.0f);
    const Tensor z = testing::random_tensor({rows, 2, n}, rng, -2.0f, 2.0f);
    const Tensor dy = testing::random_tensor({rows, 2, n}, rng);
    const Tensor w = testing::random_tensor({n}, rng);
    const std::string what = std::to_string(n) + "/" + std::to_string(group);
    for (bool before : {false, true}) {
      Tensor dw = testing::random_tensor({n}, rng), gdw = on_cuda(dw), dz, gdz;
      const Tensor gdx = rms_norm_gated_bwd(exec, on_cuda(dy), on_cuda(x), on_cuda(z), on_cuda(w), group,
                                            before, 1e-5f, gdw, gdz);
      const Tensor dx = rms_norm_gated_bwd(exec, dy, x, z, w, group, before, 1e-5f, dw, dz);
      EXPECT_LT(scaled_max_diff(gdx, dx), 1e-5f) << what << " before " << before;
      EXPECT_LT(scaled_max_diff(gdz, dz), 1e-5f) << what << " before " << before;
      EXPECT_LT(scaled_max_diff(gdw, dw), 1e-5f) << what << " before " << before;
    }
    {  // No gate: dz stays undefined.
      Tensor dw = testing::random_tensor({n}, rng), gdw = on_cuda(dw), dz, gdz;
      const Tensor gdx = rms_norm_gated_bwd(exec, on_cuda(dy), on_cuda(x), Tensor(), on_cuda(w), group, false,
                                            1e-5f, gdw, gdz);
      const Tensor dx = rms_norm_gated_bwd(exec, dy, x, Tensor(), w, group, false, 1e-5f, dw, dz);
      EXPECT_FALSE(gdz.defined());
      EXPECT_LT(scaled_max_diff(gdx, dx), 1e-5f) << what << " no gate";
      EXPECT_LT(scaled_max_diff(gdw, dw), 1e-5f) << what << " no gate";
    }
    {  // Strided z and x (column views of a wider projection), as the models pass them.
      const Tensor wide = testing::random_tensor({rows, 2, 2 * n + 5}, rng, -2.0f, 2.0f);
      const Tensor xs = wide.slice(-1, 5, n + 5), zs = wide.slice(-1, n + 5, 2 * n + 5);
      const Tensor gwide = on_cuda(wide);
      Tensor dw = testing::random_tensor({n}, rng), gdw = on_cuda(dw), dz, gdz;
      const Tensor gdx =
          rms_norm_gated_bwd(exec, on_cuda(dy), gwide.slice(-1, 5, n + 5), gwide.slice(-1, n + 5, 2 * n + 5),
                             on_cuda(w), group, false, 1e-5f, gdw, gdz);
      const Tensor dx = rms_norm_gated_bwd(exec, dy, xs, zs, w, group, false, 1e-5f, dw, dz);
      EXPECT_LT(scaled_max_diff(gdx, dx), 1e-5f) << what << " strided";
      EXPECT_LT(scaled_max_diff(gdz, dz), 1e-5f) << what << " strided";
      EXPECT_LT(scaled_max_diff(gdw, dw), 1e-5f) << what << " strided";
    }
  }
}

// Groups of at most 256 channels take a warp per group: the same bits as the one-block-per-group
// kernel for dx, dz and the weight gradient (accumulated onto random values), over the cases of
// norm_cuda_testing.h.
TEST(NormBwdCuda, GatedShortRowsMatchBlockKernel) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(3);
  const auto& k = cuda_kernels().norm;
  testing_norm::for_each_short_row_case(rng, [&](const testing_norm::ShortRowCase& c) {
    const Tensor dy = on_cuda(testing::random_tensor({c.rows, c.n}, rng)),
                 dw0 = testing::random_tensor({c.n}, rng);
    Tensor dw = on_cuda(dw0), ref_dw = on_cuda(dw0), dz, ref_dz;
    const Tensor dx = k.rms_norm_gated_bwd(dy, c.x, c.z, c.w, c.group, c.norm_before_gate, 1e-5f, dw, dz);
    const Tensor ref =
        k.rms_norm_gated_bwd_per_block(dy, c.x, c.z, c.w, c.group, c.norm_before_gate, 1e-5f, ref_dw, ref_dz);
    EXPECT_LT(scaled_max_diff(dx, ref), 1e-6f) << c.what;
    EXPECT_EQ(dx.to_vector(), ref.to_vector()) << c.what << " dx";
    EXPECT_EQ(dw.to_vector(), ref_dw.to_vector()) << c.what << " dweight";
    ASSERT_EQ(dz.defined(), c.z.defined()) << c.what;
    if (c.z.defined()) {
      EXPECT_EQ(dz.to_vector(), ref_dz.to_vector()) << c.what << " dz";
    }
  });
}

}  // namespace
}  // namespace mamba::ops
