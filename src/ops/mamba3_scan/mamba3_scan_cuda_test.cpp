// Mamba-3 scan on CUDA vs the CPU reference: SISO and MIMO ranks 1/2/4/8, d_state 16..256,
// head_dim odd and even, batch > 1, odd lengths, random input states; whole sequence through
// fwd/ref, and a prefill followed by one-token steps continuing the state; bf16 operands from the
// prepare (bf16_operands) against f32 ones. Label `cuda`.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "core/error.h"
#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/kernels.h"
#include "ops/mamba3_gates/mamba3_gates.h"
#include "ops/mamba3_gates/mamba3_gates_testing.h"
#include "ops/mamba3_scan/mamba3_scan.h"
#include "ops/mamba3_scan/mamba3_scan_testing.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::random_tensor;
using testing::scaled_max_diff;

struct Config {
  int64_t batch, seq_len, rank, n_heads, head_dim, d_state;
  bool mimo;
};

Mamba3ScanArgs random_args(const Config& c, std::mt19937& rng) {
  return testing_m3::random_scan_args(
      {c.batch, c.seq_len, c.rank, c.n_heads, c.head_dim, c.d_state, c.mimo, 16}, rng);
}

Mamba3ScanArgs on_device(const Mamba3ScanArgs& a) {
  return testing_m3::scan_args_on(a, Device::cuda);
}

Mamba3ScanArgs tokens(const Mamba3ScanArgs& a, int64_t t0, int64_t t1) {
  Mamba3ScanArgs s = a;
  for (Tensor* t : {&s.x, &s.q, &s.k, &s.adt, &s.dt, &s.trap}) *t = t->slice(1, t0, t1).contiguous();
  return s;
}

Mamba3ScanState copy_state(const Mamba3ScanState& s, Device device) {
  return {s.ssm.copy().to(device), s.k_prev.copy().to(device), s.v_prev.copy().to(device)};
}

void expect_state_near(const Mamba3ScanState& g, const Mamba3ScanState& c, const std::string& what) {
  EXPECT_LT(scaled_max_diff(g.ssm, c.ssm), 1e-4f) << what << " ssm";
  EXPECT_LT(scaled_max_diff(g.k_prev, c.k_prev), 1e-7f) << what << " k_prev";
  EXPECT_LT(scaled_max_diff(g.v_prev, c.v_prev), 1e-7f) << what << " v_prev";
}

TEST(Mamba3ScanCuda, MatchesCpuReference) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(7);
  for (const Config c : {Config{1, 1, 1, 2, 8, 16, false},
                         {2, 37, 1, 3, 16, 32, false},
                         {1, 70, 1, 2, 64, 128, false},
                         {2, 21, 1, 2, 5, 256, false},
                         {2, 19, 1, 2, 16, 16, true},
                         {1, 33, 2, 2, 32, 64, true},
                         {2, 17, 4, 3, 16, 128, true},
                         {1, 9, 8, 2, 64, 64, true},
                         {1, 12, 4, 1, 7, 256, true}}) {
    const std::string what = std::string(c.mimo ? "MIMO" : "SISO") + " R=" + std::to_string(c.rank) +
                             " L=" + std::to_string(c.seq_len) + " P=" + std::to_string(c.head_dim) +
                             " N=" + std::to_string(c.d_state);
    const Mamba3ScanArgs a = random_args(c, rng), g = on_device(a);
    const Mamba3ScanState s0{random_tensor({c.batch, c.n_heads, c.head_dim, c.d_state}, rng),
                             random_tensor({c.batch, c.rank, c.n_heads, c.d_state}, rng),
                             random_tensor({c.batch, c.n_heads, c.head_dim}, rng)};
    Mamba3ScanState cs = copy_state(s0, Device::cpu);
    Tensor y;
    mamba3_scan_ref(exec, a, cs, y);
    for (int variant = 0; variant < 2; ++variant) {  // fwd and ref both run the CUDA recurrence
      Mamba3ScanState gs = copy_state(s0, Device::cuda);
      Tensor gy;
      if (variant == 0)
        mamba3_scan_fwd(exec, g, gs, gy);
      else
        mamba3_scan_ref(exec, g, gs, gy);
      EXPECT_LT(scaled_max_diff(gy, y), 1e-4f) << what;
      expect_state_near(gs, cs, what);
    }
    // Prefill of half the tokens, then steps.
    Mamba3ScanState gs = copy_state(s0, Device::cuda);
    const int64_t k = c.seq_len / 2;
    if (k > 0) {
      Tensor gy;
      mamba3_scan_fwd(exec, tokens(g, 0, k), gs, gy);
      EXPECT_LT(scaled_max_diff(gy, y.slice(1, 0, k).contiguous()), 1e-4f) << what << " prefill";
    }
    for (int64_t t = k; t < c.seq_len; ++t) {
      Tensor gy = Tensor::empty({c.batch, 1, c.rank, c.n_heads, c.head_dim}, DType::f32, Device::cuda);
      mamba3_scan_step(exec, tokens(g, t, t + 1), gs, gy);
      EXPECT_LT(scaled_max_diff(gy, y.slice(1, t, t + 1).contiguous()), 1e-4f) << what << " step " << t;
    }
    expect_state_near(gs, cs, what + " after steps");
  }
}

// The simple scan's narrower layouts for small d_state (16 head_dim rows × 32 state entries per
// warp up to 4 × 128; SISO up to d_state 64: a head_dim row per lane) against its widest one
// (2 × 256): the same operations per state value, so the same states (and y, but for the
// row-per-lane kernel's order of the sum over n), at the Table 5b shape (batch 256, 160 tokens,
// 2 heads, 64 × 64) and at odd sizes on each side of the cuts (d_state 5, 16, 17, 32, 33, 64, 65,
// 128, 129; head_dim not a multiple of 32 or of the rows, over 32), MIMO included, from random
// states; the row-per-lane cases against the CPU too.
TEST(Mamba3ScanCuda, NarrowLayoutsMatchWide) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(8);
  for (const Config c : {Config{256, 160, 1, 2, 64, 64, false},
                         {2, 23, 1, 3, 7, 5, false},
                         {1, 40, 1, 2, 70, 16, false},
                         {2, 19, 1, 1, 33, 17, false},
                         {1, 50, 1, 2, 100, 64, false},
                         {2, 13, 1, 2, 8, 33, true},
                         {1, 17, 1, 2, 33, 32, false},
                         {2, 9, 2, 2, 17, 33, true},
                         {1, 30, 1, 1, 9, 65, false},
                         {2, 11, 4, 2, 5, 128, true},
                         {1, 8, 1, 2, 3, 129, false},
                         {3, 1, 1, 4, 64, 64, false}}) {
    const std::string what = "B=" + std::to_string(c.batch) + " L=" + std::to_string(c.seq_len) +
                             " R=" + std::to_string(c.rank) + " P=" + std::to_string(c.head_dim) +
                             " N=" + std::to_string(c.d_state);
    const Mamba3ScanArgs a = random_args(c, rng), g = on_device(a);
    const Mamba3ScanState s0{random_tensor({c.batch, c.n_heads, c.head_dim, c.d_state}, rng),
                             random_tensor({c.batch, c.rank, c.n_heads, c.d_state}, rng),
                             random_tensor({c.batch, c.n_heads, c.head_dim}, rng)};
    Mamba3ScanState narrow = copy_state(s0, Device::cuda), wide = copy_state(s0, Device::cuda);
    Tensor y, y_wide;
    cuda_kernels().mamba3_scan.scan(g, narrow, y);
    cuda_kernels().mamba3_scan.scan_wide(g, wide, y_wide);
    // SISO at d_state <= 64 takes the row-per-lane kernel: y summed over n in another order.
    EXPECT_LT(scaled_max_diff(y, y_wide), 1e-5f) << what;
    if (c.mimo || c.d_state > 64) {
      EXPECT_EQ(y.to_vector(), y_wide.to_vector()) << what << " y";
    }
    // The row-per-lane kernel's update contracts into FMAs differently (1-ulp state differences,
    // found on an H200): within 1e-6 there, the same bits elsewhere.
    if (!c.mimo && c.d_state <= 64) {
      EXPECT_LT(scaled_max_diff(narrow.ssm, wide.ssm), 1e-6f) << what << " ssm";
    } else {
      EXPECT_EQ(narrow.ssm.to_vector(), wide.ssm.to_vector()) << what << " ssm";
    }
    EXPECT_EQ(narrow.k_prev.to_vector(), wide.k_prev.to_vector()) << what << " k_prev";
    EXPECT_EQ(narrow.v_prev.to_vector(), wide.v_prev.to_vector()) << what << " v_prev";
    if (!c.mimo && c.d_state <= 64) {  // the row-per-lane kernel against the CPU as well
      Mamba3ScanState cs = copy_state(s0, Device::cpu);
      Tensor y_cpu;
      mamba3_scan_ref(exec, a, cs, y_cpu);
      EXPECT_LT(scaled_max_diff(y, y_cpu), 1e-4f) << what << " vs cpu";
      expect_state_near(narrow, cs, what + " vs cpu");
    }
  }
}

// The bf16 tensor-core scan (fast_bf16, SISO, head_dim 64, d_state 128) against the simple fp32
// scan, from random (ssm, k_prev, v_prev): within bf16 rounding (1e-2 of the largest value), a
// second call continuing the state, then one-token steps from the fast path's state.
TEST(Mamba3ScanCuda, FastBf16MatchesSimple) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(8);
  const Config c{2, 333, 1, 3, 64, 128, false};
  const Mamba3ScanArgs a = random_args(c, rng), simple = on_device(a);
  Mamba3ScanArgs fast = simple;
  fast.fast_bf16 = true;
  const Mamba3ScanState s0{random_tensor({c.batch, c.n_heads, c.head_dim, c.d_state}, rng),
                           random_tensor({c.batch, c.rank, c.n_heads, c.d_state}, rng),
                           random_tensor({c.batch, c.n_heads, c.head_dim}, rng)};
  Mamba3ScanState fs = copy_state(s0, Device::cuda), ss = copy_state(s0, Device::cuda);
  for (const auto& [t0, t1] : {std::pair<int64_t, int64_t>{0, 200}, {200, 330}}) {
    Tensor fy, sy;
    mamba3_scan_fwd(exec, tokens(fast, t0, t1), fs, fy);
    mamba3_scan_fwd(exec, tokens(simple, t0, t1), ss, sy);
    EXPECT_LT(scaled_max_diff(fy, sy), 1e-2f) << "tokens " << t0;
    EXPECT_LT(scaled_max_diff(fs.ssm, ss.ssm), 1e-2f) << "tokens " << t0;
    EXPECT_LT(scaled_max_diff(fs.k_prev, ss.k_prev), 1e-2f) << "tokens " << t0;
    EXPECT_LT(scaled_max_diff(fs.v_prev, ss.v_prev), 1e-2f) << "tokens " << t0;
  }
  for (int64_t t = 330; t < c.seq_len; ++t) {
    Tensor fy, sy;
    mamba3_scan_step(exec, tokens(fast, t, t + 1), fs, fy);
    mamba3_scan_step(exec, tokens(simple, t, t + 1), ss, sy);
    EXPECT_LT(scaled_max_diff(fy, sy), 1e-2f) << "step " << t;
  }
}

// The MIMO tensor-core scan (fast_bf16, ranks 2 and 4: 64/R-token chunks of (token, rank) rows)
// against the simple fp32 scan, as above: from random (ssm, k_prev, v_prev), within bf16 rounding, a
// second call continuing the state, then one-token steps from the fast path's state. The lengths
// leave partial chunks; 2 × 3 heads × 200 tokens run as several stored-state chunks.
TEST(Mamba3ScanCuda, FastBf16MimoMatchesSimple) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(9);
  for (int64_t rank : {2, 4}) {
    const Config c{2, 333, rank, 3, 64, 128, true};
    const Mamba3ScanArgs a = random_args(c, rng), simple = on_device(a);
    Mamba3ScanArgs fast = simple;
    fast.fast_bf16 = true;
    const Mamba3ScanState s0{random_tensor({c.batch, c.n_heads, c.head_dim, c.d_state}, rng),
                             random_tensor({c.batch, c.rank, c.n_heads, c.d_state}, rng),
                             random_tensor({c.batch, c.n_heads, c.head_dim}, rng)};
    Mamba3ScanState fs = copy_state(s0, Device::cuda), ss = copy_state(s0, Device::cuda);
    const std::string what = "R=" + std::to_string(rank) + " tokens ";
    for (const auto& [t0, t1] : {std::pair<int64_t, int64_t>{0, 200}, {200, 330}}) {
      Tensor fy, sy;
      mamba3_scan_fwd(exec, tokens(fast, t0, t1), fs, fy);
      mamba3_scan_fwd(exec, tokens(simple, t0, t1), ss, sy);
      EXPECT_LT(scaled_max_diff(fy, sy), 1e-2f) << what << t0;
      EXPECT_LT(scaled_max_diff(fs.ssm, ss.ssm), 1e-2f) << what << t0;
      EXPECT_LT(scaled_max_diff(fs.k_prev, ss.k_prev), 1e-2f) << what << t0;
      EXPECT_LT(scaled_max_diff(fs.v_prev, ss.v_prev), 1e-2f) << what << t0;
    }
    for (int64_t t = 330; t < c.seq_len; ++t) {
      Tensor fy, sy;
      mamba3_scan_step(exec, tokens(fast, t, t + 1), fs, fy);
      mamba3_scan_step(exec, tokens(simple, t, t + 1), ss, sy);
      EXPECT_LT(scaled_max_diff(fy, sy), 1e-2f) << what << "step " << t;
    }
  }
}

// bf16 operands (bf16_operands: q/k written bf16 by the prepare, x converted once) against f32
// operands. The fast scan rounds f32 ones to bf16 itself, the same round-to-nearest, so the two
// agree to the last bit (tight tolerance); the other paths (one-token step, a shape without a
// tensor-core kernel) widen bf16 operands to f32 and match the simple scan on the widened values.
// The backward refuses bf16 operands.
TEST(Mamba3ScanCuda, Bf16OperandsMatchF32) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(10);
  for (const testing_m3::GateDims d : {testing_m3::GateDims{2, 203, 3, 64, 128, 1, 1, false},
                                       {1, 77, 2, 64, 128, 1, 2, true},
                                       {2, 45, 3, 32, 64, 1, 1, false}}) {
    const std::string what = "R=" + std::to_string(d.rank) + " P=" + std::to_string(d.head_dim);
    const Mamba3Gates g =
        testing_m3::gates_on_cuda(testing_m3::random_gates(d, Mamba3Rope::data_dependent, rng));
    const int64_t S = g.n_rope_angles, H = d.n_heads, P = d.head_dim, N = d.d_state, R = d.rank;
    const int64_t width = 2 * H * P + 2 * R * d.n_groups * N + 3 * H + S;
    const Tensor proj = on_cuda(random_tensor({d.batch, d.seq_len, width}, rng, -2.0f, 2.0f));
    const Tensor x = proj.slice(-1, H * P, 2 * H * P);  // the x columns, as the model takes them
    Mamba3ScanArgs a32;
    a32.D = on_cuda(random_tensor({H}, rng));
    a32.mimo_x = d.mimo ? on_cuda(random_tensor({H, R, P}, rng, 0.0f, 1.0f)) : Tensor();
    a32.fast_bf16 = true;
    Mamba3ScanArgs a16 = a32;
    a16.bf16_operands = true;
    a32.x = x.contiguous().view({d.batch, d.seq_len, H, P});
    a16.x = x.to(DType::bf16).view({d.batch, d.seq_len, H, P});
    Tensor angle32 = Tensor::zeros({d.batch, H, S}, DType::f32, Device::cuda), angle16 = angle32.copy();
    mamba3_prepare_fwd(exec, proj, g, angle32, a32);
    mamba3_prepare_fwd(exec, proj, g, angle16, a16);
    ASSERT_EQ(a16.q.dtype(), DType::bf16) << what;
    const Mamba3ScanState s0{random_tensor({d.batch, H, P, N}, rng), random_tensor({d.batch, R, H, N}, rng),
                             random_tensor({d.batch, H, P}, rng)};
    // The f32 reference of the paths without a bf16 kernel: the bf16-rounded operands, widened.
    Mamba3ScanArgs w32 = a32;
    for (Tensor* t : {&w32.x, &w32.q, &w32.k}) *t = t->to(DType::bf16).to(DType::f32);
    // Whole sequence (the fast path where P = 64: from the unrounded f32 operands), then steps
    // continuing the state.
    Mamba3ScanState s32 = copy_state(s0, Device::cuda), s16 = copy_state(s0, Device::cuda);
    const int64_t k = d.seq_len - 3;
    const bool fast = mamba3_scan_fast_bf16_applies(k, R, d.mimo, P, N);
    Tensor y32, y16;
    mamba3_scan_fwd(exec, tokens(fast ? a32 : w32, 0, k), s32, y32);
    mamba3_scan_fwd(exec, tokens(a16, 0, k), s16, y16);
    EXPECT_LT(scaled_max_diff(y16, y32.to(Device::cpu)), 1e-6f) << what;
    EXPECT_LT(scaled_max_diff(s16.ssm, s32.ssm.to(Device::cpu)), 1e-6f) << what;
    EXPECT_LT(scaled_max_diff(s16.k_prev, s32.k_prev.to(Device::cpu)), 1e-6f) << what;
    EXPECT_LT(scaled_max_diff(s16.v_prev, s32.v_prev.to(Device::cpu)), 1e-6f) << what;
    for (int64_t t = k; t < d.seq_len; ++t) {
      Tensor z32, z16;
      mamba3_scan_step(exec, tokens(w32, t, t + 1), s32, z32);
      mamba3_scan_step(exec, tokens(a16, t, t + 1), s16, z16);
      EXPECT_LT(scaled_max_diff(z16, z32.to(Device::cpu)), 1e-6f) << what << " step " << t;
    }
    EXPECT_LT(scaled_max_diff(s16.ssm, s32.ssm.to(Device::cpu)), 1e-6f) << what << " after steps";
    const Tensor dy = on_cuda(random_tensor({d.batch, d.seq_len, R, H, P}, rng));
    EXPECT_THROW(static_cast<void>(mamba3_scan_bwd(exec, a16, dy)), Error) << what;
  }
}

}  // namespace
}  // namespace mamba::ops
