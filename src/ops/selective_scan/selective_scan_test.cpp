// selective_scan vs a double-precision sequential evaluation of SPEC §1.2, and split composition.
#include "ops/selective_scan/selective_scan.h"

#include <gtest/gtest.h>

#include <cmath>

#include "exec_testing.h"
#include "testing.h"

namespace mamba::ops {
namespace {

struct Case {
  SelectiveScanArgs args;
  int64_t batch, seq_len, d_inner, d_state;
};

Case make_case(std::mt19937& rng, int64_t batch, int64_t seq_len, int64_t d_inner, int64_t d_state) {
  Case c{{}, batch, seq_len, d_inner, d_state};
  c.args.u = testing::random_tensor({batch, seq_len, d_inner}, rng);
  c.args.delta = testing::random_tensor({batch, seq_len, d_inner}, rng, -4, 1);
  c.args.delta_bias = testing::random_tensor({d_inner}, rng, -2, 0);
  c.args.A = testing::random_tensor({d_inner, d_state}, rng, -3, -0.1f);
  c.args.B = testing::random_tensor({batch, seq_len, d_state}, rng);
  c.args.C = testing::random_tensor({batch, seq_len, d_state}, rng);
  c.args.D = testing::random_tensor({d_inner}, rng);
  c.args.z = testing::random_tensor({batch, seq_len, d_inner}, rng);
  return c;
}

Tensor naive(const Case& c) {
  const auto& a = c.args;
  Tensor y = Tensor::empty({c.batch, c.seq_len, c.d_inner});
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t d = 0; d < c.d_inner; ++d) {
      std::vector<double> h(c.d_state, 0.0);
      for (int64_t t = 0; t < c.seq_len; ++t) {
        const int64_t i = (b * c.seq_len + t) * c.d_inner + d;
        const double v = double(a.delta.f32()[i]) + a.delta_bias.f32()[d];
        const double delta = v <= 20 ? std::log1p(std::exp(v)) : v;
        double acc = 0;
        for (int64_t n = 0; n < c.d_state; ++n) {
          const int64_t bn = (b * c.seq_len + t) * c.d_state + n;
          h[n] = std::exp(delta * a.A.f32()[d * c.d_state + n]) * h[n] + delta * a.B.f32()[bn] * a.u.f32()[i];
          acc += a.C.f32()[bn] * h[n];
        }
        const double zv = a.z.f32()[i];
        y.f32()[i] = float((acc + a.D.f32()[d] * a.u.f32()[i]) * zv / (1 + std::exp(-zv)));
      }
    }
  return y;
}

SelectiveScanArgs slice_args(const SelectiveScanArgs& a, int64_t t0, int64_t t1) {
  SelectiveScanArgs s = a;
  s.u = a.u.slice(1, t0, t1).contiguous();
  s.delta = a.delta.slice(1, t0, t1).contiguous();
  s.B = a.B.slice(1, t0, t1);
  s.C = a.C.slice(1, t0, t1);
  s.z = a.z.slice(1, t0, t1);
  return s;
}

TEST(SelectiveScan, MatchesNaiveAndSplits) {
  std::mt19937 rng(6);
  for (int64_t L : {1, 5, 33}) {
    Case c = make_case(rng, 2, L, 6, 7);
    Tensor state = Tensor::zeros({2, 6, 7});
    Tensor y = selective_scan_fwd(exec, c.args, state);
    Tensor ref = naive(c);
    EXPECT_LT(testing::max_abs_diff(y, ref), 1e-5f) << "L=" << L;
    for (int64_t split : {int64_t(0), L / 2, L - 1}) {
      Tensor st = Tensor::zeros({2, 6, 7});
      Tensor y0 = selective_scan_fwd(exec, slice_args(c.args, 0, split), st);
      for (int64_t t = split; t < L; ++t) {
        Tensor yt = selective_scan_fwd(exec, slice_args(c.args, t, t + 1), st);
        EXPECT_LT(testing::max_abs_diff(yt, ref.slice(1, t, t + 1).contiguous()), 1e-5f);
      }
      EXPECT_LT(testing::max_abs_diff(st, state), 1e-5f);
    }
  }
}

// y written over delta or u (SelectiveScanArgs::y_into, inference's buffer reuse): the same values
// bit for bit as into a new tensor, and the same state.
TEST(SelectiveScan, IntoItsInputsIsExact) {
  std::mt19937 rng(9);
  const Case c = make_case(rng, 2, 17, 6, 7);
  Tensor state = Tensor::zeros({2, 6, 7});
  const Tensor want = selective_scan_fwd(exec, c.args, state);
  for (int target = 0; target < 2; ++target) {
    SelectiveScanArgs a = c.args;
    a.u = a.u.copy();
    a.delta = a.delta.copy();
    a.y_into = target == 0 ? a.delta : a.u;
    Tensor st = Tensor::zeros({2, 6, 7});
    const Tensor y = selective_scan_fwd(exec, a, st);
    EXPECT_EQ(y.raw(), a.y_into.raw()) << (target == 0 ? "delta" : "u");
    EXPECT_EQ(testing::max_abs_diff(y, want), 0.0f) << (target == 0 ? "delta" : "u");
    EXPECT_EQ(testing::max_abs_diff(st, state), 0.0f);
  }
}

}  // namespace
}  // namespace mamba::ops
