// Elementwise ops vs direct formulas, including strided column views and id validation.
#include "ops/elementwise/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "exec_testing.h"
#include "ops/elementwise/activations.h"
#include "testing.h"

namespace mamba::ops {
namespace {

TEST(Elementwise, SwigluBothOrders) {
  std::mt19937 rng(10);
  Tensor h = testing::random_tensor({2, 3, 10}, rng);
  for (bool gate_first : {false, true}) {
    Tensor out = swiglu(exec, h, gate_first);
    ASSERT_EQ(out.shape(), (Shape{2, 3, 5}));
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t i = 0; i < 5; ++i) {
        const float a = h.f32()[r * 10 + i], b = h.f32()[r * 10 + 5 + i];
        EXPECT_FLOAT_EQ(out.f32()[r * 5 + i], gate_first ? silu(a) * b : a * silu(b));
      }
  }
}

// The GateAct formulas in double, written out independently of gate_act.h.
double ref_act(GateAct act, double v) {
  switch (act) {
    case GateAct::silu:
      return v / (1.0 + std::exp(-v));
    case GateAct::gelu:
      return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    case GateAct::gelu_tanh:
      return 0.5 * v *
             (1.0 + std::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
    case GateAct::relu2:
      return v > 0 ? v * v : 0.0;
  }
  return NAN;
}

constexpr GateAct kActs[] = {GateAct::silu, GateAct::gelu, GateAct::gelu_tanh, GateAct::relu2};

// Inputs as the models pass them: contiguous, column views of a wider projection (uniform row
// stride), views with non-nesting leading strides (a slice of the middle dim, a transpose of the
// leading dims), 1-D and 4-D; with `last` > 4096 a row spans several parallel blocks.
std::vector<Tensor> act_inputs(std::mt19937& rng, int64_t last) {
  std::vector<Tensor> out;
  out.push_back(testing::random_tensor({last}, rng, -5, 5));
  out.push_back(testing::random_tensor({1, 1, last}, rng, -5, 5));
  out.push_back(testing::random_tensor({2, 3, last}, rng, -5, 5));
  out.push_back(testing::random_tensor({2, 3, last + 5}, rng, -5, 5).slice(-1, 2, last + 2));
  out.push_back(testing::random_tensor({3, 5, last + 1}, rng, -5, 5).slice(1, 1, 4).slice(-1, 1, last + 1));
  out.push_back(testing::random_tensor({4, 3, last}, rng, -5, 5).transpose(0, 1));
  out.push_back(testing::random_tensor({2, 2, 3, last + 3}, rng, -5, 5).slice(-1, 0, last));
  out.push_back(testing::random_tensor({7, last}, rng, -5, 5).slice(0, 2, 6));
  return out;
}

void expect_matches_ref(const Tensor& got, const Tensor& ref_in,
                        const std::function<double(const float*, int64_t)>& f, const std::string& what) {
  ASSERT_TRUE(got.is_contiguous()) << what;
  const Tensor in = ref_in.contiguous();  // independent of the op's strided reads
  const int64_t n = got.size(-1), rows = n == 0 ? 0 : got.numel() / n, in_n = in.size(-1);
  int bad = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const double ref = f(in.f32() + r * in_n, i), v = got.f32()[r * n + i];
      if (!(std::fabs(v - ref) <= 1e-6 + 2e-6 * std::fabs(ref)) && ++bad <= 5)
        ADD_FAILURE() << what << " row " << r << " col " << i << ": " << v << " vs " << ref;
    }
}

TEST(Elementwise, GatedActMatchesReference) {
  std::mt19937 rng(13);
  for (int64_t n : {1, 4, 33, 4100}) {
    for (const Tensor& h : act_inputs(rng, 2 * n)) {
      Shape want = h.shape();
      want.back() = n;
      for (GateAct act : kActs)
        for (bool gate_first : {false, true}) {
          const Tensor out = gated_act(exec, h, act, gate_first);
          ASSERT_EQ(out.shape(), want);
          expect_matches_ref(
              out, h,
              [&](const float* row, int64_t i) {
                const double a = row[i], b = row[n + i];
                return gate_first ? ref_act(act, a) * b : a * ref_act(act, b);
              },
              "gated_act " + std::to_string(int(act)) + " gate_first " + std::to_string(gate_first) + " " +
                  shape_str(h.shape()));
        }
    }
  }
}

TEST(Elementwise, GatedActSiluIsSwiglu) {
  std::mt19937 rng(14);
  for (const Tensor& h : act_inputs(rng, 66))
    for (bool gate_first : {false, true}) {
      const Tensor a = gated_act(exec, h, GateAct::silu, gate_first), b = swiglu(exec, h, gate_first);
      ASSERT_EQ(a.shape(), b.shape());
      EXPECT_EQ(std::memcmp(a.f32(), b.f32(), static_cast<size_t>(a.numel()) * 4), 0);
    }
}

TEST(Elementwise, ActivationMatchesReference) {
  std::mt19937 rng(15);
  for (int64_t n : {1, 7, 64, 4099})
    for (const Tensor& x : act_inputs(rng, n))
      for (GateAct act : kActs) {
        const Tensor out = activation(exec, x, act);
        ASSERT_EQ(out.shape(), x.shape());
        expect_matches_ref(
            out, x, [&](const float* row, int64_t i) { return ref_act(act, row[i]); },
            "activation " + std::to_string(int(act)) + " " + shape_str(x.shape()));
      }
  // Exact values: relu² at 0 and negatives, gelu(0) = 0.
  const Tensor v = Tensor::from_vector({-2.0f, 0.0f, 3.0f}, {3});
  EXPECT_EQ(activation(exec, v, GateAct::relu2).to_vector(), (std::vector<float>{0.0f, 0.0f, 9.0f}));
  EXPECT_EQ(activation(exec, v, GateAct::gelu).to_vector()[1], 0.0f);
  EXPECT_EQ(activation(exec, v, GateAct::gelu_tanh).to_vector()[1], 0.0f);
}

TEST(Elementwise, Scale) {
  std::mt19937 rng(16);
  for (int64_t n : {0, 1, 37, 10000}) {
    Tensor x = testing::random_tensor({n}, rng, -3, 3);
    const Tensor x0 = x.copy();
    scale_(exec, x, -0.37f);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(x.f32()[i], x0.f32()[i] * -0.37f);
  }
  Tensor y = testing::random_tensor({2, 3, 4}, rng), y0 = y.copy();
  scale_(exec, y, 2.0f);
  for (int64_t i = 0; i < 24; ++i) EXPECT_EQ(y.f32()[i], 2.0f * y0.f32()[i]);
}

TEST(Elementwise, StridedColumnsAndClamp) {
  std::mt19937 rng(11);
  Tensor wide = testing::random_tensor({2, 3, 9}, rng, -30, 30);
  Tensor raw = wide.slice(-1, 4, 8);  // strided rows
  Tensor bias = testing::random_tensor({4}, rng);
  Tensor out = softplus_bias_clamp(exec, raw, bias, 0.01f, 5.0f);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t i = 0; i < 4; ++i) {
      const float v = softplus(wide.f32()[r * 9 + 4 + i] + bias.f32()[i]);
      EXPECT_FLOAT_EQ(out.f32()[r * 4 + i], std::min(std::max(v, 0.01f), 5.0f));
    }
  Tensor y = testing::random_tensor({2, 3, 4}, rng), y0 = y.copy();
  mul_silu_(exec, y, raw);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t i = 0; i < 4; ++i)
      EXPECT_FLOAT_EQ(y.f32()[r * 4 + i], y0.f32()[r * 4 + i] * silu(wide.f32()[r * 9 + 4 + i]));
}

TEST(Elementwise, ConcatAddEmbedding) {
  std::mt19937 rng(12);
  Tensor a = testing::random_tensor({2, 3}, rng), b = testing::random_tensor({2, 2}, rng);
  Tensor c = concat_last(exec, a, b);
  EXPECT_EQ(c.to_vector()[3], b.f32()[0]);
  EXPECT_EQ(c.to_vector()[5], a.f32()[3]);
  Tensor s = a.copy();
  add_(exec, s, a);
  EXPECT_FLOAT_EQ(s.f32()[4], 2 * a.f32()[4]);
  Tensor table = testing::random_tensor({5, 3}, rng);
  Tensor ids = Tensor::empty({2}, DType::i64);
  ids.data<int64_t>()[0] = 4;
  ids.data<int64_t>()[1] = 0;
  Tensor e = embedding(exec, ids, table);
  EXPECT_EQ(e.f32()[0], table.f32()[12]);
  EXPECT_EQ(e.f32()[3], table.f32()[0]);
  ids.data<int64_t>()[1] = 5;
  try {
    embedding(exec, ids, table);
    FAIL() << "expected an out-of-vocabulary error";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), ErrorCode::out_of_range);
    EXPECT_NE(std::string(err.what()).find("token id 5 at position 1"), std::string::npos) << err.what();
  }
}

TEST(Elementwise, NegExp) {
  std::mt19937 rng(9);
  const Tensor x = testing::random_tensor({4, 7}, rng, -5.0f, 2.0f);
  const Tensor a = neg_exp(exec, x.transpose(0, 1));  // made contiguous inside
  ASSERT_EQ(a.shape(), (Shape{7, 4}));
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(a.f32()[i * 4 + j], -std::exp(x.f32()[j * 7 + i]));
}

}  // namespace
}  // namespace mamba::ops
