// linear on CUDA vs the CPU op: odd sizes, batches of rows, bias, row-strided column views of
// x, and bf16 weights (against the CPU op on bf16-rounded operands). Label `cuda`.
#include <gtest/gtest.h>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/linear/linear.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

TEST(LinearCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (auto [batch, seq_len, in, out] :
       {std::tuple{1, 1, 7, 5}, {2, 3, 17, 33}, {3, 65, 64, 31}, {1, 257, 768, 1536}}) {
    for (bool with_bias : {false, true}) {
      const Tensor x = testing::random_tensor({batch, seq_len, in}, rng);
      const Tensor w = testing::random_tensor({out, in}, rng);
      const Tensor b = with_bias ? testing::random_tensor({out}, rng) : Tensor();
      const Tensor y = linear(exec, on_cuda(x), on_cuda(w), on_cuda(b));
      EXPECT_LT(scaled_max_diff(y, linear(exec, x, w, b)), 1e-5f)
          << batch << "x" << seq_len << " " << in << "->" << out;
    }
  }
}

TEST(LinearCuda, ColumnViewInput) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  const Tensor wide = testing::random_tensor({2, 9, 40}, rng);
  const Tensor w = testing::random_tensor({11, 24}, rng);
  const Tensor x = wide.slice(-1, 10, 34);  // rows at stride 40
  const Tensor y = linear(exec, on_cuda(wide).slice(-1, 10, 34), on_cuda(w));
  EXPECT_LT(scaled_max_diff(y, linear(exec, x.contiguous(), w)), 1e-5f);
}

TEST(LinearCuda, IntoPreallocated) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(3);
  const Tensor x = testing::random_tensor({5, 19}, rng), w = testing::random_tensor({23, 19}, rng);
  const Tensor b = testing::random_tensor({23}, rng);
  Tensor y = Tensor::empty({5, 23}, DType::f32, Device::cuda);
  linear_into(exec, on_cuda(x), on_cuda(w), on_cuda(b), y);
  EXPECT_LT(scaled_max_diff(y, linear(exec, x, w, b)), 1e-5f);
}

TEST(LinearCuda, Bf16Weights) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(4);
  const Tensor x = testing::random_tensor({3, 33, 96}, rng), w = testing::random_tensor({80, 96}, rng);
  // Reference: the CPU op on the same bf16-rounded operands, accumulated in f32.
  const Tensor ref = linear(exec, x.to(DType::bf16).to(DType::f32), w.to(DType::bf16).to(DType::f32));
  const Tensor y = linear(exec, on_cuda(x), on_cuda(w).to(DType::bf16));
  EXPECT_LT(scaled_max_diff(y, ref), 1e-5f);
}

}  // namespace
}  // namespace mamba::ops
