// SSD: chunked form vs the sequential definition vs a double-precision naive loop, over odd
// lengths, lengths not a multiple of the chunk, batch > 1, n_groups > 1, D per head or channel,
// and continuation from a non-zero state.
#include "ops/ssd/ssd.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "exec_testing.h"
#include "ops/elementwise/elementwise.h"
#include "testing.h"

namespace mamba::ops {
namespace {

SsdArgs make_args(std::mt19937& rng, int64_t B, int64_t L, int64_t H, int64_t P, int64_t G, int64_t N,
                  bool d_per_channel, int64_t chunk) {
  SsdArgs a;
  a.x = testing::random_tensor({B, L, H, P}, rng);
  a.dt = testing::random_tensor({B, L, H}, rng, 0.01f, 0.6f);
  a.A = testing::random_tensor({H}, rng, -4, -0.5f);
  a.B = testing::random_tensor({B, L, G, N}, rng);
  a.C = testing::random_tensor({B, L, G, N}, rng);
  a.D = testing::random_tensor({d_per_channel ? H * P : H}, rng);
  a.chunk_size = chunk;
  return a;
}

Tensor naive(const SsdArgs& a, const Tensor& init) {
  const int64_t B = a.x.size(0), L = a.x.size(1), H = a.x.size(2), P = a.x.size(3), G = a.B.size(2),
                N = a.B.size(3);
  Tensor y = Tensor::empty(a.x.shape());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      std::vector<double> S(P * N);
      for (int64_t i = 0; i < P * N; ++i) S[i] = init.f32()[(b * H + h) * P * N + i];
      for (int64_t t = 0; t < L; ++t) {
        const double dt = a.dt.f32()[(b * L + t) * H + h], dA = std::exp(dt * a.A.f32()[h]);
        for (int64_t p = 0; p < P; ++p) {
          const double x = a.x.f32()[((b * L + t) * H + h) * P + p];
          double acc = 0;
          for (int64_t n = 0; n < N; ++n) {
            const int64_t bn = ((b * L + t) * G + g) * N + n;
            S[p * N + n] = dA * S[p * N + n] + dt * x * a.B.f32()[bn];
            acc += a.C.f32()[bn] * S[p * N + n];
          }
          const double Dv = a.D.numel() == H ? a.D.f32()[h] : a.D.f32()[h * P + p];
          y.f32()[((b * L + t) * H + h) * P + p] = float(acc + Dv * x);
        }
      }
    }
  return y;
}

SsdArgs slice_args(const SsdArgs& a, int64_t t0, int64_t t1) {
  SsdArgs s = a;
  s.x = a.x.slice(1, t0, t1).contiguous();
  s.dt = a.dt.slice(1, t0, t1).contiguous();
  s.B = a.B.slice(1, t0, t1).contiguous();
  s.C = a.C.slice(1, t0, t1).contiguous();
  return s;
}

TEST(Ssd, ChunkedMatchesSequentialAndNaive) {
  std::mt19937 rng(7);
  for (auto [L, chunk, G, dpc] : {std::tuple{1, 4, 1, false},
                                  {7, 4, 2, false},
                                  {33, 8, 2, true},
                                  {64, 16, 1, false},
                                  {50, 256, 4, true}}) {
    const int64_t B = 2, H = 4, P = 5, N = 6;
    SsdArgs a = make_args(rng, B, L, H, P, G, N, dpc, chunk);
    Tensor init = testing::random_tensor({B, H, P, N}, rng);
    Tensor s1 = init.copy(), s2 = init.copy();
    Tensor y1 = ssd_fwd(exec, a, s1), y2 = ssd_ref(exec, a, s2);
    Tensor ref = naive(a, init);
    EXPECT_LT(testing::max_abs_diff(y1, ref), 2e-5f) << "L=" << L << " chunk=" << chunk;
    EXPECT_LT(testing::max_abs_diff(y2, ref), 2e-5f);
    EXPECT_LT(testing::max_abs_diff(s1, s2), 2e-5f);
    // Split: chunked prefill of `split` tokens, then sequential steps.
    const int64_t split = L / 2;
    Tensor s3 = init.copy();
    Tensor ya = ssd_fwd(exec, slice_args(a, 0, split), s3);
    Tensor yb = ssd_ref(exec, slice_args(a, split, L), s3);
    EXPECT_LT(testing::max_abs_diff(yb, ref.slice(1, split, L).contiguous()), 2e-5f);
    EXPECT_LT(testing::max_abs_diff(s3, s1), 2e-5f);
  }
}

// A state row longer than the recurrence's 16 partial sums and not a multiple of them (N = 40),
// and decays strong enough that the chunked form's factors underflow within a chunk (which it
// takes as zero below 1e-30), against the naive loop.
TEST(Ssd, WideStateAndStrongDecay) {
  std::mt19937 rng(13);
  for (bool strong : {false, true}) {
    SsdArgs a = make_args(rng, 1, 70, 2, 3, 1, 40, false, 64);
    if (strong) {
      a.dt = testing::random_tensor({1, 70, 2}, rng, 0.5f, 3.0f);
      a.A = testing::random_tensor({2}, rng, -16.0f, -4.0f);
    }
    Tensor init = testing::random_tensor({1, 2, 3, 40}, rng);
    Tensor s1 = init.copy(), s2 = init.copy();
    Tensor y1 = ssd_fwd(exec, a, s1), y2 = ssd_ref(exec, a, s2);
    Tensor ref = naive(a, init);
    float scale = 1.0f;
    for (float v : ref.to_vector()) scale = std::max(scale, std::fabs(v));
    EXPECT_LT(testing::max_abs_diff(y1, ref), 2e-5f * scale) << strong;
    EXPECT_LT(testing::max_abs_diff(y2, ref), 2e-5f * scale) << strong;
    EXPECT_LT(testing::max_abs_diff(s1, s2), 2e-5f) << strong;
  }
}

// A raw dt (a strided column block, as the model's in_proj output) with dt_bias and a dt_limit
// clamp: the forward and the reference give what they give on softplus_bias_clamp's Δ, bit for bit,
// decode (one token) included; the backward refuses it.
TEST(Ssd, RawDtWithBiasIsTheSoftplusOp) {
  std::mt19937 rng(11);
  for (int64_t L : {1, 7}) {
    SsdArgs a = make_args(rng, 2, L, 4, 8, 2, 16, false, 4);
    const Tensor wide = testing::random_tensor({2, L, 4 + 5}, rng, -6.0f, 3.0f);
    SsdArgs raw = a;
    raw.dt = wide.slice(-1, 2, 6);  // rows at stride 9
    raw.dt_bias = testing::random_tensor({4}, rng, -1.0f, 1.0f);
    raw.dt_lo = 0.01f;
    raw.dt_hi = 0.4f;
    a.dt = softplus_bias_clamp(exec, raw.dt, raw.dt_bias, raw.dt_lo, raw.dt_hi);
    const Tensor s0 = testing::random_tensor({2, 4, 8, 16}, rng);
    Tensor s1 = s0.copy(), s2 = s0.copy(), s3 = s0.copy(), s4 = s0.copy();
    EXPECT_EQ(testing::max_abs_diff(ssd_fwd(exec, raw, s1), ssd_fwd(exec, a, s2)), 0.0f) << L;
    EXPECT_EQ(testing::max_abs_diff(s1, s2), 0.0f);
    EXPECT_EQ(testing::max_abs_diff(ssd_ref(exec, raw, s3), ssd_ref(exec, a, s4)), 0.0f) << L;
  }
  SsdArgs raw = make_args(rng, 1, 3, 2, 4, 1, 8, false, 4);
  raw.dt_bias = testing::random_tensor({2}, rng);
  raw.dt_hi = 1.0f;
  EXPECT_THROW(ssd_bwd(exec, raw, testing::random_tensor({1, 3, 2, 4}, rng)), Error);
}

}  // namespace
}  // namespace mamba::ops
