// Elementwise ops vs direct formulas, including strided column views and id validation.
#include "ops/elementwise/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "ops/elementwise/activations.h"
#include "testing.h"

namespace mamba::ops {
namespace {

TEST(Elementwise, SwigluBothOrders) {
  std::mt19937 rng(10);
  Tensor h = testing::random_tensor({2, 3, 10}, rng);
  for (bool gate_first : {false, true}) {
    Tensor out = swiglu(h, gate_first);
    ASSERT_EQ(out.shape(), (Shape{2, 3, 5}));
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t i = 0; i < 5; ++i) {
        const float a = h.f32()[r * 10 + i], b = h.f32()[r * 10 + 5 + i];
        EXPECT_FLOAT_EQ(out.f32()[r * 5 + i], gate_first ? silu(a) * b : a * silu(b));
      }
  }
}

TEST(Elementwise, StridedColumnsAndClamp) {
  std::mt19937 rng(11);
  Tensor wide = testing::random_tensor({2, 3, 9}, rng, -30, 30);
  Tensor raw = wide.slice(-1, 4, 8);  // strided rows
  Tensor bias = testing::random_tensor({4}, rng);
  Tensor out = softplus_bias_clamp(raw, bias, 0.01f, 5.0f);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t i = 0; i < 4; ++i) {
      const float v = softplus(wide.f32()[r * 9 + 4 + i] + bias.f32()[i]);
      EXPECT_FLOAT_EQ(out.f32()[r * 4 + i], std::min(std::max(v, 0.01f), 5.0f));
    }
  Tensor y = testing::random_tensor({2, 3, 4}, rng), y0 = y.copy();
  mul_silu_(y, raw);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t i = 0; i < 4; ++i)
      EXPECT_FLOAT_EQ(y.f32()[r * 4 + i], y0.f32()[r * 4 + i] * silu(wide.f32()[r * 9 + 4 + i]));
}

TEST(Elementwise, ConcatAddEmbedding) {
  std::mt19937 rng(12);
  Tensor a = testing::random_tensor({2, 3}, rng), b = testing::random_tensor({2, 2}, rng);
  Tensor c = concat_last(a, b);
  EXPECT_EQ(c.to_vector()[3], b.f32()[0]);
  EXPECT_EQ(c.to_vector()[5], a.f32()[3]);
  Tensor s = a.copy();
  add_(s, a);
  EXPECT_FLOAT_EQ(s.f32()[4], 2 * a.f32()[4]);
  Tensor table = testing::random_tensor({5, 3}, rng);
  Tensor ids = Tensor::empty({2}, DType::i64);
  ids.data<int64_t>()[0] = 4;
  ids.data<int64_t>()[1] = 0;
  Tensor e = embedding(ids, table);
  EXPECT_EQ(e.f32()[0], table.f32()[12]);
  EXPECT_EQ(e.f32()[3], table.f32()[0]);
  ids.data<int64_t>()[1] = 5;
  try {
    embedding(ids, table);
    FAIL() << "expected an out-of-vocabulary error";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), ErrorCode::out_of_range);
    EXPECT_NE(std::string(err.what()).find("token id 5 at position 1"), std::string::npos) << err.what();
  }
}

TEST(Elementwise, NegExp) {
  std::mt19937 rng(9);
  const Tensor x = testing::random_tensor({4, 7}, rng, -5.0f, 2.0f);
  const Tensor a = neg_exp(x.transpose(0, 1));  // made contiguous inside
  ASSERT_EQ(a.shape(), (Shape{7, 4}));
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(a.f32()[i * 4 + j], -std::exp(x.f32()[j * 7 + i]));
}

}  // namespace
}  // namespace mamba::ops
