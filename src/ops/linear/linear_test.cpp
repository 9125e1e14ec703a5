// linear vs a naive triple loop on random inputs (odd sizes, batch of rows, with/without bias).
#include "ops/linear/linear.h"

#include <gtest/gtest.h>

#include "exec_testing.h"
#include "ops/elementwise/elementwise.h"
#include "ops/norm/norm.h"
#include "testing.h"

namespace mamba::ops {
namespace {

Tensor naive_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
  Shape shape = x.shape();
  shape.back() = out;
  Tensor y = Tensor::empty(shape);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = b.defined() ? b.f32()[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += double(x.f32()[r * in + i]) * w.f32()[o * in + i];
      y.f32()[r * out + o] = static_cast<float>(acc);
    }
  return y;
}

TEST(Linear, MatchesNaive) {
  std::mt19937 rng(1);
  for (auto [rows, in, out] : {std::tuple{1, 7, 5}, {3, 17, 33}, {65, 64, 31}}) {
    for (bool with_bias : {false, true}) {
      Tensor x = testing::random_tensor({rows, 1, in}, rng);
      Tensor w = testing::random_tensor({out, in}, rng);
      Tensor b = with_bias ? testing::random_tensor({out}, rng) : Tensor();
      Tensor y = linear(exec, x, w, b);
      EXPECT_EQ(y.shape(), (Shape{rows, 1, out}));
      EXPECT_LT(testing::max_abs_diff(y, naive_linear(x, w, b)), 1e-4f);
    }
  }
}

// The decode fusions on the CPU are the ops they fuse, in sequence: the same bits.
TEST(Linear, DecodeFusionsComposeOnCpu) {
  std::mt19937 rng(9);
  const Tensor x = testing::random_tensor({3, 40}, rng, -2, 2), norm_w = testing::random_tensor({40}, rng);
  const Tensor w = testing::random_tensor({17, 40}, rng), r0 = testing::random_tensor({3, 17}, rng);
  EXPECT_FALSE(decode_gemv_applies(exec, 3, w));
  EXPECT_EQ(testing::max_abs_diff(rms_norm_linear(exec, x, norm_w, 1e-5f, w),
                                  linear(exec, rms_norm(exec, x, norm_w, 1e-5f), w)),
            0.0f);
  Tensor r = r0.copy(), expected = r0.copy();
  linear_add_(exec, r, x, w);
  add_(exec, expected, linear(exec, x, w));
  EXPECT_EQ(testing::max_abs_diff(r, expected), 0.0f);
}

}  // namespace
}  // namespace mamba::ops
