// The decode GEMV of linear_cuda.cu (bf16 weight, 1-4 f32 rows, x rounded to bf16 on the fly)
// against the CPU op on bf16-rounded operands, and against the cuBLAS path (5 rows): odd output
// counts, row-strided views, bias. Label `cuda`.
#include <gtest/gtest.h>

#include <tuple>

#include "cuda_testing.h"
#include "ops/linear/linear.h"
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
                               {4, 1024, 1001},
                               {5, 512, 300}}) {
    for (bool with_bias : {false, true}) {
      const Tensor wide = testing::random_tensor({rows, in + 12}, rng);  // rows at stride in + 12
      const Tensor x = wide.slice(1, 4, 4 + in);
      const Tensor w = testing::random_tensor({out, in}, rng);
      const Tensor b = with_bias ? testing::random_tensor({out}, rng) : Tensor();
      const Tensor y = linear(on_cuda(wide).slice(1, 4, 4 + in), on_cuda(w).to(DType::bf16), on_cuda(b));
      const Tensor ref = linear(bf16_rounded(x.contiguous()), bf16_rounded(w), b);
      EXPECT_LT(scaled_max_diff(y, ref), 1e-5f) << rows << " rows " << in << "->" << out;
      // One row of the same data alone: the same values as within the batch.
      const Tensor y0 =
          linear(on_cuda(x.slice(0, 0, 1).contiguous()), on_cuda(w).to(DType::bf16), on_cuda(b));
      EXPECT_LT(scaled_max_diff(y0, ref.slice(0, 0, 1).contiguous()), 1e-5f) << rows << " rows, row 0";
    }
  }
}

}  // namespace
}  // namespace mamba::ops
