// Selective scan on CUDA vs the CPU op: d_state 1..256 (slices of 16 and partial slices), batch
// > 1, odd lengths, B/C as column views of one x_dbl, with and without the z gate, and a split
// call (prefill + single tokens) continuing the state. Label `cuda`.
#include <gtest/gtest.h>

#include <cmath>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/selective_scan/selective_scan.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

struct Case {
  SelectiveScanArgs cpu, gpu;
  Tensor x_dbl, gx_dbl, xz, gxz;  // owners of the B/C and z column views
};

Case make_case(int64_t batch, int64_t seq_len, int64_t d_inner, int64_t d_state, bool gate,
               std::mt19937& rng) {
  Case c;
  c.cpu.u = testing::random_tensor({batch, seq_len, d_inner}, rng);
  c.cpu.delta = testing::random_tensor({batch, seq_len, d_inner}, rng, -4.0f, 1.0f);
  c.cpu.delta_bias = testing::random_tensor({d_inner}, rng, -1.0f, 0.0f);
  c.cpu.A = testing::random_tensor({d_inner, d_state}, rng, -4.0f, -0.1f);
  c.x_dbl = testing::random_tensor({batch, seq_len, 3 + 2 * d_state}, rng);  // [dt_low | B | C]
  c.cpu.B = c.x_dbl.slice(-1, 3, 3 + d_state);
  c.cpu.C = c.x_dbl.slice(-1, 3 + d_state, 3 + 2 * d_state);
  c.cpu.D = testing::random_tensor({d_inner}, rng);
  c.xz = testing::random_tensor({batch, seq_len, 2 * d_inner}, rng, -3.0f, 3.0f);
  if (gate) c.cpu.z = c.xz.slice(-1, d_inner, 2 * d_inner);
  c.gpu = c.cpu;
  for (Tensor* t : {&c.gpu.u, &c.gpu.delta, &c.gpu.delta_bias, &c.gpu.A, &c.gpu.D}) *t = on_cuda(*t);
  c.gx_dbl = on_cuda(c.x_dbl);
  c.gpu.B = c.gx_dbl.slice(-1, 3, 3 + d_state);
  c.gpu.C = c.gx_dbl.slice(-1, 3 + d_state, 3 + 2 * d_state);
  c.gxz = on_cuda(c.xz);
  if (gate) c.gpu.z = c.gxz.slice(-1, d_inner, 2 * d_inner);
  return c;
}

// The rows [t0, t1) of every per-token argument.
SelectiveScanArgs tokens(const SelectiveScanArgs& a, int64_t t0, int64_t t1) {
  SelectiveScanArgs s = a;
  s.u = a.u.slice(1, t0, t1).contiguous();
  s.delta = a.delta.slice(1, t0, t1).contiguous();
  s.B = a.B.slice(1, t0, t1);
  s.C = a.C.slice(1, t0, t1);
  if (a.z.defined()) s.z = a.z.slice(1, t0, t1);
  return s;
}

TEST(SelectiveScanCuda, MatchesCpuAndContinuesState) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  for (auto [batch, seq_len, d_inner, d_state] : {std::tuple{1, 1, 8, 16},
                                                  {2, 37, 33, 16},
                                                  {3, 9, 16, 24},
                                                  {1, 130, 64, 64},
                                                  {2, 5, 7, 1},
                                                  {1, 17, 12, 256}}) {
    for (bool gate : {false, true}) {
      const Case c = make_case(batch, seq_len, d_inner, d_state, gate, rng);
      const Tensor s0 = testing::random_tensor({batch, d_inner, d_state}, rng);
      Tensor s = s0.copy(), gs = on_cuda(s0);
      const Tensor y = selective_scan_fwd(exec, c.cpu, s);
      EXPECT_LT(scaled_max_diff(selective_scan_fwd(exec, c.gpu, gs), y), 1e-5f)
          << d_state << " gate " << gate;
      EXPECT_LT(scaled_max_diff(gs, s), 1e-5f);
      // Prefill of half the tokens, then one token per call.
      Tensor gs2 = on_cuda(s0);
      const int64_t k = seq_len / 2;
      if (k > 0) {
        EXPECT_LT(scaled_max_diff(selective_scan_fwd(exec, tokens(c.gpu, 0, k), gs2),
                                  y.slice(1, 0, k).contiguous()),
                  1e-5f);
      }
      for (int64_t t = k; t < seq_len; ++t)
        EXPECT_LT(scaled_max_diff(selective_scan_fwd(exec, tokens(c.gpu, t, t + 1), gs2),
                                  y.slice(1, t, t + 1).contiguous()),
                  1e-5f);
      EXPECT_LT(scaled_max_diff(gs2, s), 1e-5f);
    }
  }
}

}  // namespace
}  // namespace mamba::ops
