// Attention vs a naive causal softmax (GQA, odd lengths, offsets) and rotary vs its definition.
#include "ops/attention/attention.h"

#include <gtest/gtest.h>

#include <cmath>

#include "exec_testing.h"
#include "testing.h"

namespace mamba::ops {
namespace {

// Prefill and decode shapes, head_dim below and at the SIMD width (the CPU dot products and
// exponentials are vector reductions).
TEST(Attention, MatchesNaiveCausalGqa) {
  std::mt19937 rng(8);
  for (auto [B, L, H, KV, E, cap, pos] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>{2, 7, 4, 2, 5, 12, 3},
        {2, 1, 4, 2, 64, 40, 30},
        {2, 24, 4, 2, 64, 40, 9},
        {1, 17, 6, 3, 7, 20, 0}}) {
    SCOPED_TRACE("L " + std::to_string(L) + " E " + std::to_string(E));
    Tensor q = testing::random_tensor({B, L, H, E}, rng);
    Tensor k = testing::random_tensor({B, cap, KV, E}, rng), v = testing::random_tensor({B, cap, KV, E}, rng);
    const float scale = 1.0f / std::sqrt(float(E));
    Tensor out = attention_fwd(exec, q, k, v, pos, scale);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < L; ++t)
        for (int64_t h = 0; h < H; ++h) {
          const int64_t kh = h / (H / KV);
          std::vector<double> w;
          double mx = -1e30, sum = 0;
          for (int64_t s = 0; s <= pos + t; ++s) {
            double dot = 0;
            for (int64_t e = 0; e < E; ++e)
              dot +=
                  double(q.f32()[((b * L + t) * H + h) * E + e]) * k.f32()[((b * cap + s) * KV + kh) * E + e];
            w.push_back(dot * scale);
            mx = std::max(mx, w.back());
          }
          for (double& x : w) sum += x = std::exp(x - mx);
          for (int64_t e = 0; e < E; ++e) {
            double acc = 0;
            for (size_t s = 0; s < w.size(); ++s)
              acc += w[s] / sum * v.f32()[((b * cap + s) * KV + kh) * E + e];
            EXPECT_NEAR(out.f32()[((b * L + t) * H + h) * E + e], acc, 1e-5);
          }
        }
  }
}

TEST(Rotary, HalfSplitAndInterleaved) {
  std::mt19937 rng(9);
  for (bool inter : {false, true}) {
    Tensor x = testing::random_tensor({1, 3, 2, 10}, rng);
    Tensor y = x.copy();
    rotary_apply(exec, y, 8, 5, 10000.0f, inter);
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t h = 0; h < 2; ++h) {
        const float* a = x.f32() + (t * 2 + h) * 10;
        const float* r = y.f32() + (t * 2 + h) * 10;
        for (int j = 0; j < 4; ++j) {
          const double ang = (5 + t) * std::pow(10000.0, -2.0 * j / 8);
          const int i0 = inter ? 2 * j : j, i1 = inter ? 2 * j + 1 : j + 4;
          EXPECT_NEAR(r[i0], a[i0] * std::cos(ang) - a[i1] * std::sin(ang), 1e-4);
          EXPECT_NEAR(r[i1], a[i0] * std::sin(ang) + a[i1] * std::cos(ang), 1e-4);
        }
        EXPECT_EQ(r[8], a[8]);
        EXPECT_EQ(r[9], a[9]);
      }
  }
}

}  // namespace
}  // namespace mamba::ops
