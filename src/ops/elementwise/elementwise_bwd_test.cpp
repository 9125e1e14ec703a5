// Finite-difference checks of the elementwise ops' backward: swiglu (both orders), the silu gate,
// softplus + bias + clamp (inside, clamped, past the softplus threshold), the embedding's
// scatter-add with repeated ids, and A = −exp(A_log).
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "grad_check.h"
#include "ops/elementwise/elementwise.h"
#include "testing.h"

namespace mamba::ops {
namespace {

TEST(ElementwiseBwd, SwigluBothOrders) {
  std::mt19937 rng(1);
  for (bool gate_first : {false, true}) {
    Tensor h = testing::random_tensor({2, 3, 8}, rng, -3, 3), dout = testing::random_tensor({2, 3, 4}, rng);
    const Tensor dh = swiglu_bwd(dout, h, gate_first);
    testing::expect_grads_match([&] { return testing::weighted_sum(swiglu(h, gate_first), dout); },
                                {{"h", h, dh}});
  }
}

TEST(ElementwiseBwd, MulSilu) {
  std::mt19937 rng(2);
  Tensor y = testing::random_tensor({2, 3, 5}, rng, -2, 2), z = testing::random_tensor({2, 3, 5}, rng, -3, 3);
  Tensor dout = testing::random_tensor({2, 3, 5}, rng), dy, dz;
  mul_silu_bwd(dout, y, z, dy, dz);
  testing::expect_grads_match(
      [&] {
        Tensor out = y.copy();
        mul_silu_(out, z);
        return testing::weighted_sum(out, dout);
      },
      {{"y", y, dy}, {"z", z, dz}});
}

TEST(ElementwiseBwd, SoftplusBiasClamp) {
  std::mt19937 rng(3);
  // Values around the clamp bounds (0.3, 2) and past the threshold 20 (with hi = infinity).
  for (auto [lo, hi, offset] : {std::tuple{0.3f, 2.0f, 0.0f}, std::tuple{0.0f, INFINITY, 21.0f}}) {
    Tensor raw = testing::random_tensor({2, 4, 6}, rng, -3 + offset, 3 + offset),
           bias = testing::random_tensor({6}, rng);
    Tensor dout = testing::random_tensor({2, 4, 6}, rng), dbias = Tensor::zeros({6});
    const Tensor draw = softplus_bias_clamp_bwd(dout, raw, bias, lo, hi, dbias);
    testing::expect_grads_match(
        [&] { return testing::weighted_sum(softplus_bias_clamp(raw, bias, lo, hi), dout); },
        {{"raw", raw, draw}, {"bias", bias, dbias}});
  }
}

TEST(ElementwiseBwd, EmbeddingScatterAdd) {
  std::mt19937 rng(4);
  Tensor table = testing::random_tensor({7, 5}, rng);
  Tensor ids = Tensor::empty({2, 4}, DType::i64);
  const int64_t values[] = {1, 3, 1, 6, 0, 3, 3, 2};
  for (int64_t i = 0; i < 8; ++i) ids.data<int64_t>()[i] = values[i];
  Tensor dout = testing::random_tensor({2, 4, 5}, rng), dtable = Tensor::zeros({7, 5});
  embedding_bwd(ids, dout, dtable);
  testing::expect_grads_match([&] { return testing::weighted_sum(embedding(ids, table), dout); },
                              {{"table", table, dtable}}, 1e-3f, 1e-2f, 35);
}

TEST(ElementwiseBwd, NegExp) {
  std::mt19937 rng(5);
  Tensor A_log = testing::random_tensor({3, 4}, rng), dA = testing::random_tensor({3, 4}, rng);
  auto A_of = [&] {
    Tensor A = Tensor::empty({3, 4});
    for (int64_t i = 0; i < 12; ++i) A.f32()[i] = -std::exp(A_log.f32()[i]);
    return A;
  };
  Tensor dA_log = Tensor::zeros({3, 4});
  neg_exp_bwd(dA, A_of(), dA_log);
  testing::expect_grads_match([&] { return testing::weighted_sum(A_of(), dA); }, {{"A_log", A_log, dA_log}});
}

}  // namespace
}  // namespace mamba::ops
