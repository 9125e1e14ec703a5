// linear_bwd on CUDA vs the CPU op: odd sizes, batches of rows, with and without a bias
// gradient, gradients accumulated into nonzero dweight/dbias, row-strided column views of x,
// and bf16/f16 weights (against the CPU op on the same rounded operands). Label `cuda`.
#include <gtest/gtest.h>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/linear/linear.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

TEST(LinearBwdCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (auto [batch, seq_len, in, out] :
       {std::tuple{1, 1, 7, 5}, {2, 3, 17, 33}, {3, 65, 64, 31}, {1, 257, 768, 1536}, {2, 100, 33, 1}}) {
    for (bool with_bias : {false, true}) {
      const Tensor x = testing::random_tensor({batch, seq_len, in}, rng);
      const Tensor w = testing::random_tensor({out, in}, rng);
      const Tensor dy = testing::random_tensor({batch, seq_len, out}, rng);
      // Nonzero starting gradients: both versions must add to them.
      Tensor dw = testing::random_tensor({out, in}, rng);
      Tensor db = with_bias ? testing::random_tensor({out}, rng) : Tensor();
      Tensor gdw = on_cuda(dw), gdb = on_cuda(db);
      const Tensor gdx = linear_bwd(exec, on_cuda(dy), on_cuda(x), on_cuda(w), gdw, gdb);
      const Tensor dx = linear_bwd(exec, dy, x, w, dw, db);
      const std::string what = std::to_string(batch) + "x" + std::to_string(seq_len) + " " +
                               std::to_string(in) + "->" + std::to_string(out);
      EXPECT_EQ(gdx.shape(), x.shape()) << what;
      EXPECT_LT(scaled_max_diff(gdx, dx), 1e-5f) << what;
      EXPECT_LT(scaled_max_diff(gdw, dw), 1e-5f) << what;
      if (with_bias) {
        EXPECT_LT(scaled_max_diff(gdb, db), 1e-5f) << what;
      }
    }
  }
}

TEST(LinearBwdCuda, ColumnViewInput) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  const Tensor wide = testing::random_tensor({2, 9, 40}, rng);
  const Tensor w = testing::random_tensor({11, 24}, rng), dy = testing::random_tensor({2, 9, 11}, rng);
  Tensor dw = testing::random_tensor({11, 24}, rng), db = testing::random_tensor({11}, rng);
  Tensor gdw = on_cuda(dw), gdb = on_cuda(db);
  // x: rows at stride 40, read in place on the device.
  const Tensor gdx = linear_bwd(exec, on_cuda(dy), on_cuda(wide).slice(-1, 10, 34), on_cuda(w), gdw, gdb);
  const Tensor dx = linear_bwd(exec, dy, wide.slice(-1, 10, 34), w, dw, db);
  EXPECT_LT(scaled_max_diff(gdx, dx), 1e-5f);
  EXPECT_LT(scaled_max_diff(gdw, dw), 1e-5f);
  EXPECT_LT(scaled_max_diff(gdb, db), 1e-5f);
  // A 2-D view as well (the [rows, in] case).
  const Tensor wide2 = testing::random_tensor({37, 50}, rng), dy2 = testing::random_tensor({37, 11}, rng);
  Tensor dw2 = Tensor::zeros({11, 24}), gdw2 = on_cuda(dw2), no_db;
  const Tensor gdx2 =
      linear_bwd(exec, on_cuda(dy2), on_cuda(wide2).slice(-1, 3, 27), on_cuda(w), gdw2, no_db);
  const Tensor dx2 = linear_bwd(exec, dy2, wide2.slice(-1, 3, 27), w, dw2, no_db);
  EXPECT_LT(scaled_max_diff(gdx2, dx2), 1e-5f);
  EXPECT_LT(scaled_max_diff(gdw2, dw2), 1e-5f);
}

TEST(LinearBwdCuda, HalfWeights) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(4);
  for (DType wt : {DType::bf16, DType::f16}) {
    const Tensor x = testing::random_tensor({3, 33, 96}, rng), w = testing::random_tensor({80, 96}, rng);
    const Tensor dy = testing::random_tensor({3, 33, 80}, rng);
    Tensor dw = testing::random_tensor({80, 96}, rng), db = testing::random_tensor({80}, rng);
    Tensor gdw = on_cuda(dw), gdb = on_cuda(db);
    const Tensor gdx = linear_bwd(exec, on_cuda(dy), on_cuda(x), on_cuda(w).to(wt), gdw, gdb);
    // Reference: the CPU op on the same rounded GEMM operands, accumulated in f32; the bias
    // gradient sums the unrounded dy.
    auto rounded = [&](const Tensor& t) { return t.to(wt).to(DType::f32); };
    Tensor no_db;
    const Tensor dx = linear_bwd(exec, rounded(dy), rounded(x), rounded(w), dw, no_db);
    {
      Tensor dw_unused = Tensor::zeros({80, 96});
      linear_bwd(exec, dy, x, w, dw_unused, db);
    }
    EXPECT_EQ(gdw.dtype(), DType::f32);
    EXPECT_LT(scaled_max_diff(gdx, dx), 1e-5f) << dtype_name(wt);
    EXPECT_LT(scaled_max_diff(gdw, dw), 1e-5f) << dtype_name(wt);
    EXPECT_LT(scaled_max_diff(gdb, db), 1e-5f) << dtype_name(wt);
  }
}

}  // namespace
}  // namespace mamba::ops
