// SSD on CUDA vs the CPU ops (chunked ssd_fwd and sequential ssd_ref): n_groups 1..4, d_state
// 16..256, head_dim not a multiple of the warp's rows, D per head or per channel, odd lengths,
// and a prefill followed by one-token calls continuing the state. Label `cuda`.
#include <gtest/gtest.h>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/elementwise/elementwise.h"
#include "ops/ssd/ssd.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

SsdArgs on_device(const SsdArgs& a) {
  SsdArgs g = a;
  for (Tensor* t : {&g.x, &g.dt, &g.A, &g.B, &g.C, &g.D}) *t = on_cuda(*t);
  return g;
}

SsdArgs tokens(const SsdArgs& a, int64_t t0, int64_t t1) {
  SsdArgs s = a;
  for (Tensor* t : {&s.x, &s.dt, &s.B, &s.C}) *t = t->slice(1, t0, t1).contiguous();
  return s;
}

TEST(SsdCuda, MatchesCpuAndContinuesState) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  struct Shape6 {
    int64_t batch, seq_len, n_heads, head_dim, n_groups, d_state;
  };
  for (const Shape6 s : {Shape6{1, 1, 2, 4, 1, 16},
                         {2, 37, 8, 16, 2, 16},
                         {1, 70, 4, 5, 4, 32},
                         {2, 19, 6, 64, 3, 128},
                         {1, 9, 2, 8, 1, 256},
                         {3, 33, 4, 16, 1, 48}}) {
    for (bool d_per_channel : {false, true}) {
      SsdArgs a;
      a.x = testing::random_tensor({s.batch, s.seq_len, s.n_heads, s.head_dim}, rng);
      a.dt = testing::random_tensor({s.batch, s.seq_len, s.n_heads}, rng, 0.001f, 0.5f);
      a.A = testing::random_tensor({s.n_heads}, rng, -8.0f, -0.5f);
      a.B = testing::random_tensor({s.batch, s.seq_len, s.n_groups, s.d_state}, rng);
      a.C = testing::random_tensor({s.batch, s.seq_len, s.n_groups, s.d_state}, rng);
      a.D = testing::random_tensor({d_per_channel ? s.n_heads * s.head_dim : s.n_heads}, rng);
      a.chunk_size = 16;
      const SsdArgs g = on_device(a);
      const Tensor s0 = testing::random_tensor({s.batch, s.n_heads, s.head_dim, s.d_state}, rng);
      Tensor st = s0.copy(), st_ref = s0.copy(), gst = on_cuda(s0), gst_ref = on_cuda(s0);
      const Tensor y = ssd_fwd(exec, a, st), y_ref = ssd_ref(exec, a, st_ref);
      EXPECT_LT(scaled_max_diff(ssd_fwd(exec, g, gst), y), 1e-4f) << s.d_state << " G " << s.n_groups;
      EXPECT_LT(scaled_max_diff(ssd_ref(exec, g, gst_ref), y_ref), 1e-5f);
      EXPECT_LT(scaled_max_diff(gst, st), 1e-4f);
      Tensor gst2 = on_cuda(s0);
      const int64_t k = s.seq_len / 2;
      if (k > 0) {
        EXPECT_LT(scaled_max_diff(ssd_fwd(exec, tokens(g, 0, k), gst2), y_ref.slice(1, 0, k).contiguous()),
                  1e-5f);
      }
      for (int64_t t = k; t < s.seq_len; ++t)
        EXPECT_LT(
            scaled_max_diff(ssd_ref(exec, tokens(g, t, t + 1), gst2), y_ref.slice(1, t, t + 1).contiguous()),
            1e-5f);
      EXPECT_LT(scaled_max_diff(gst2, st_ref), 1e-5f);
    }
  }
}

// The bf16 tensor-core scan (fast_bf16, head_dim 64, d_state 128) against the simple fp32 scan, from
// a random initial state, over several 256-token state chunks and a ragged tail: within bf16
// rounding (1e-2 of the largest value); then one-token steps continue from the fast path's state.
TEST(SsdCuda, FastBf16MatchesSimple) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  for (const int64_t n_groups : {1, 2}) {
    const int64_t batch = 2, seq_len = 601, H = 4, P = 64, N = 128;
    SsdArgs a;
    a.x = testing::random_tensor({batch, seq_len, H, P}, rng);
    a.dt = testing::random_tensor({batch, seq_len, H}, rng, 0.001f, 0.2f);
    a.A = testing::random_tensor({H}, rng, -4.0f, -0.5f);
    a.B = testing::random_tensor({batch, seq_len, n_groups, N}, rng);
    a.C = testing::random_tensor({batch, seq_len, n_groups, N}, rng);
    a.D = testing::random_tensor({H}, rng);
    SsdArgs fast = on_device(a);
    fast.fast_bf16 = true;
    const SsdArgs simple = on_device(a);
    const Tensor s0 = testing::random_tensor({batch, H, P, N}, rng);
    Tensor st_fast = on_cuda(s0), st_simple = on_cuda(s0);
    const Tensor y_fast = ssd_fwd(exec, fast, st_fast), y_simple = ssd_fwd(exec, simple, st_simple);
    EXPECT_LT(scaled_max_diff(y_fast, y_simple), 1e-2f) << "G " << n_groups;
    EXPECT_LT(scaled_max_diff(st_fast, st_simple), 1e-2f) << "G " << n_groups;
    for (int64_t t = 0; t < 3; ++t) {
      const SsdArgs one = tokens(fast, t, t + 1);
      EXPECT_LT(
          scaled_max_diff(ssd_fwd(exec, one, st_fast), ssd_fwd(exec, tokens(simple, t, t + 1), st_simple)),
          1e-2f);
    }
  }
}

// A raw dt (strided rows) with dt_bias and a dt_limit clamp: the one-token step takes Δ inside its
// kernel, the scans after softplus_bias_clamp; both bit for bit what softplus_bias_clamp's Δ gives,
// at shapes of the step (D per head) and of the scans (D per channel, several tokens, bf16 fast).
TEST(SsdCuda, RawDtWithBiasIsTheSoftplusOp) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(12);
  struct Case {
    int64_t batch, seq_len, n_heads, head_dim, d_state;
    bool d_per_channel, fast;
  };
  for (const Case c : {Case{2, 1, 4, 16, 32, false, false},
                       {3, 1, 8, 64, 128, false, true},
                       {2, 1, 4, 16, 32, true, false},
                       {2, 9, 4, 16, 32, false, false},
                       {1, 70, 4, 64, 128, false, true}}) {
    SsdArgs a;
    a.x = on_cuda(testing::random_tensor({c.batch, c.seq_len, c.n_heads, c.head_dim}, rng));
    a.A = on_cuda(testing::random_tensor({c.n_heads}, rng, -8.0f, -0.5f));
    a.B = on_cuda(testing::random_tensor({c.batch, c.seq_len, 1, c.d_state}, rng));
    a.C = on_cuda(testing::random_tensor({c.batch, c.seq_len, 1, c.d_state}, rng));
    a.D = on_cuda(testing::random_tensor({c.d_per_channel ? c.n_heads * c.head_dim : c.n_heads}, rng));
    a.chunk_size = 16;
    a.fast_bf16 = c.fast;
    SsdArgs raw = a;
    const Tensor wide =
        on_cuda(testing::random_tensor({c.batch, c.seq_len, c.n_heads + 7}, rng, -6.0f, 3.0f));
    raw.dt = wide.slice(-1, 3, 3 + c.n_heads);
    raw.dt_bias = on_cuda(testing::random_tensor({c.n_heads}, rng, -1.0f, 1.0f));
    raw.dt_lo = 0.01f;
    raw.dt_hi = 0.4f;
    a.dt = softplus_bias_clamp(exec, raw.dt, raw.dt_bias, raw.dt_lo, raw.dt_hi);
    const Tensor s0 = on_cuda(testing::random_tensor({c.batch, c.n_heads, c.head_dim, c.d_state}, rng));
    Tensor s1 = s0.copy(), s2 = s0.copy();
    const Tensor y1 = ssd_fwd(exec, raw, s1).to(Device::cpu), y2 = ssd_fwd(exec, a, s2).to(Device::cpu);
    EXPECT_EQ(testing::max_abs_diff(y1, y2), 0.0f) << c.seq_len << " " << c.head_dim;
    EXPECT_EQ(testing::max_abs_diff(s1.to(Device::cpu), s2.to(Device::cpu)), 0.0f);
  }
}

}  // namespace
}  // namespace mamba::ops
