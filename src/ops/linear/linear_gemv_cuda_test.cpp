// The decode GEMV of linear_cuda.cu (bf16 weight, 1-4 f32 rows, x rounded to bf16 on the fly)
// against the CPU op on bf16-rounded operands, and against the cuBLAS path (5 rows): odd output
// counts, row-strided views, bias, each work split (on an H100: 2 outputs per warp for 8544
// outputs, 2 warps per output for 1536 -> 3000, 4 for 4096 -> 2048); and its decode fusions (norm
// prologue, residual-add epilogue).
// Label `cuda`.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/elementwise/elementwise.h"
#include "ops/linear/linear.h"
#include "ops/norm/norm.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

Tensor bf16_rounded(const Tensor& t) {
  return t.to(DType::bf16).to(DType::f32);
}

TEST(LinearGemvCuda, Bf16WeightsFewRows) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(7);
  for (auto [rows, in, out] : {std::tuple{1, 8, 1},
                               {1, 2048, 8544},
                               {2, 264, 37},
                               {3, 4096, 2048},
                               {2, 1536, 3000},
                               {4, 1024, 1001},
                               {5, 512, 300}}) {
    for (bool with_bias : {false, true}) {
      const Tensor wide = testing::random_tensor({rows, in + 12}, rng);  // rows at stride in + 12
      const Tensor x = wide.slice(1, 4, 4 + in);
      const Tensor w = testing::random_tensor({out, in}, rng);
      const Tensor b = with_bias ? testing::random_tensor({out}, rng) : Tensor();
      const Tensor y =
          linear(exec, on_cuda(wide).slice(1, 4, 4 + in), on_cuda(w).to(DType::bf16), on_cuda(b));
      const Tensor ref = linear(exec, bf16_rounded(x.contiguous()), bf16_rounded(w), b);
      EXPECT_LT(scaled_max_diff(y, ref), 1e-5f) << rows << " rows " << in << "->" << out;
      // One row of the same data alone: the same values as within the batch.
      const Tensor y0 =
          linear(exec, on_cuda(x.slice(0, 0, 1).contiguous()), on_cuda(w).to(DType::bf16), on_cuda(b));
      EXPECT_LT(scaled_max_diff(y0, ref.slice(0, 0, 1).contiguous()), 1e-5f) << rows << " rows, row 0";
    }
  }
}

// The GEMV's decode fusions: rms_norm_linear (norm in the prologue) against rms_norm then the
// GEMV on the device (the same bits: same reduction order and rounding point) and the CPU op on
// bf16-rounded operands; linear_add_ (add in the epilogue) against the GEMV then add_. Odd output
// counts, widths below one block's stride, and shapes that fall back to the unfused ops (5 rows,
// normed rows over the shared-memory limit, f32 weights).
TEST(LinearGemvCuda, DecodeFusions) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(11);
  for (auto [rows, in, out] : {std::tuple{1, 8, 1},
                               {1, 2048, 8544},
                               {2, 264, 37},
                               {3, 4096, 2048},
                               {2, 1536, 3000},
                               {4, 2048, 1001},
                               {5, 512, 300},
                               {4, 8192, 64}}) {
    for (DType dtype : {DType::bf16, DType::f32}) {
      const std::string what = std::to_string(rows) + " rows " + std::to_string(in) + "->" +
                               std::to_string(out) + " " + dtype_name(dtype);
      const Tensor x = testing::random_tensor({rows, in}, rng, -3.0f, 3.0f);
      const Tensor norm_w = testing::random_tensor({in}, rng, 0.5f, 1.5f);
      const Tensor w = testing::random_tensor({out, in}, rng);
      const Tensor wd = on_cuda(w).to(dtype);
      const bool fused = dtype == DType::bf16 && rows <= 4 && rows * in * 2 <= 48 * 1024;
      EXPECT_EQ(decode_gemv_applies(exec, rows, wd), fused) << what;

      const Tensor y = rms_norm_linear(exec, on_cuda(x), on_cuda(norm_w), 1e-5f, wd);
      const Tensor unfused = linear(exec, rms_norm(exec, on_cuda(x), on_cuda(norm_w), 1e-5f), wd);
      EXPECT_EQ(testing::max_abs_diff(y.to(Device::cpu), unfused.to(Device::cpu)), 0.0f) << what;
      const Tensor normed = rms_norm(exec, x, norm_w, 1e-5f);
      const Tensor ref = dtype == DType::bf16 ? linear(exec, bf16_rounded(normed), bf16_rounded(w))
                                              : linear(exec, normed, w);
      // bf16: the CPU's rstd may round a few normed values to the neighbouring bf16.
      EXPECT_LT(scaled_max_diff(y, ref), dtype == DType::bf16 ? 1e-2f : 1e-4f) << what;

      const Tensor o = testing::random_tensor({rows, in}, rng);
      const Tensor r0 = testing::random_tensor({rows, out}, rng, -4.0f, 4.0f);
      Tensor r = on_cuda(r0).copy(), expected = on_cuda(r0).copy();
      linear_add_(exec, r, on_cuda(o), wd);
      add_(exec, expected, linear(exec, on_cuda(o), wd));
      EXPECT_EQ(testing::max_abs_diff(r.to(Device::cpu), expected.to(Device::cpu)), 0.0f) << what;
      Tensor cpu_r = r0.copy();
      add_(exec, cpu_r,
           dtype == DType::bf16 ? linear(exec, bf16_rounded(o), bf16_rounded(w)) : linear(exec, o, w));
      EXPECT_LT(scaled_max_diff(r, cpu_r), 1e-4f) << what;
    }
  }
}

}  // namespace
}  // namespace mamba::ops
