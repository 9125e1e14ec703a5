// ssd_bwd on CUDA (the exact scan and the GEMM form, each called directly) vs the CPU ssd_bwd on
// random inputs: lengths 1, 7, 77, 300 and several 256-token chunks with a ragged tail, n_groups
// 1..3 (up to 4 heads a group), d_state 16..256, head_dim from a few rows to more than one block's
// tile, D per head and per channel; the GEMM form's TF32 mode and the fused tensor-core backward
// against the exact scan. Label `cuda`.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/kernels.h"
#include "ops/ssd/ssd.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::scaled_max_diff;

struct Case {
  int64_t batch, seq_len, n_heads, head_dim, n_groups, d_state;
};

SsdArgs random_args(const Case& s, bool d_per_channel, std::mt19937& rng) {
  SsdArgs a;
  a.x = testing::random_tensor({s.batch, s.seq_len, s.n_heads, s.head_dim}, rng);
  a.dt = testing::random_tensor({s.batch, s.seq_len, s.n_heads}, rng, 0.001f, 0.5f);
  a.A = testing::random_tensor({s.n_heads}, rng, -4.0f, -0.1f);
  a.B = testing::random_tensor({s.batch, s.seq_len, s.n_groups, s.d_state}, rng);
  a.C = testing::random_tensor({s.batch, s.seq_len, s.n_groups, s.d_state}, rng);
  a.D = testing::random_tensor({d_per_channel ? s.n_heads * s.head_dim : s.n_heads}, rng);
  return a;
}

SsdArgs to_cuda(const SsdArgs& a) {
  SsdArgs g = a;
  for (Tensor* t : {&g.x, &g.dt, &g.A, &g.B, &g.C, &g.D}) *t = on_cuda(*t);
  return g;
}

std::string describe(const Case& s, bool d_per_channel) {
  return "B " + std::to_string(s.batch) + " L " + std::to_string(s.seq_len) + " H " +
         std::to_string(s.n_heads) + " P " + std::to_string(s.head_dim) + " G " + std::to_string(s.n_groups) +
         " N " + std::to_string(s.d_state) + (d_per_channel ? " D/channel" : " D/head");
}

// tol_dA (default tol): dA sums one head's terms over every token of the batch.
void expect_close(const SsdGrads& got, const SsdGrads& ref, float tol, const std::string& where,
                  float tol_dA = 0.0f) {
  EXPECT_LT(scaled_max_diff(got.dx, ref.dx), tol) << "dx " << where;
  EXPECT_LT(scaled_max_diff(got.ddt, ref.ddt), tol) << "ddt " << where;
  EXPECT_LT(scaled_max_diff(got.dA, ref.dA), tol_dA > 0 ? tol_dA : tol) << "dA " << where;
  EXPECT_LT(scaled_max_diff(got.dB, ref.dB), tol) << "dB " << where;
  EXPECT_LT(scaled_max_diff(got.dC, ref.dC), tol) << "dC " << where;
  EXPECT_LT(scaled_max_diff(got.dD, ref.dD), tol) << "dD " << where;
}

const Case kCases[] = {{1, 1, 2, 4, 1, 16},     {2, 7, 4, 8, 2, 16},    {1, 77, 4, 5, 2, 64},
                       {2, 300, 4, 16, 1, 128}, {1, 300, 4, 20, 2, 64}, {1, 600, 2, 64, 1, 128},
                       {1, 257, 2, 80, 2, 32},  {2, 40, 2, 8, 1, 256},  {1, 1100, 2, 64, 2, 128},
                       {2, 512, 8, 64, 1, 128}, {1, 700, 6, 33, 3, 48}};

// Both CUDA backwards (the exact scan and the GEMM form) against the CPU, fp32.
TEST(SsdBwdCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(3);
  for (const Case& s : kCases) {
    for (bool d_per_channel : {false, true}) {
      const SsdArgs a = random_args(s, d_per_channel, rng);
      const Tensor dy = testing::random_tensor({s.batch, s.seq_len, s.n_heads, s.head_dim}, rng);
      const SsdArgs g = to_cuda(a);
      const Tensor dy_g = on_cuda(dy);
      const SsdGrads ref = ssd_bwd(exec, a, dy);
      // fp32 both ways, different summation orders (CPU: per token over the whole sequence; GPU:
      // chunk-passed states, shared-memory sums over rows, and ddt/dA from a reverse cumulative sum
      // over at most 256 tokens, through exp of differences of cumulative sums in the GEMM form):
      // rounding grows with the number of tokens a value depends on, so longer sequences get a
      // looser bound.
      const float tol = s.seq_len > 256 ? 3e-4f : 1e-4f;
      const std::string where = describe(s, d_per_channel);
      expect_close(cuda_kernels().ssd.bwd_exact(g, dy_g), ref, tol, "exact " + where);
      ASSERT_TRUE(cuda_kernels().ssd.bwd_gemm_supported(g)) << where;
      expect_close(cuda_kernels().ssd.bwd_gemm(g, dy_g), ref, tol, "gemm " + where);
    }
  }
}

// fast_bf16 gives the GEMM form bf16 operands (M, dM, dy, dt·x) in its per-head Q×Q products and
// TF32 elsewhere: checked against the exact scan with a bf16 bound (8 mantissa bits, relative
// error ~4e-3 per operand, sums over up to 256 terms). dA gets 5e-2: it sums a head's bf16-rounded
// terms over all batch × seq_len tokens (600 to 1100 here), so the roundings add up (2.03e-2 seen on an
// H100 at B 2 L 512; the other gradients stay ≤ 4e-3 at the bench shapes).
TEST(SsdBwdCuda, FastModeMatchesExact) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(5);
  for (const Case s : {Case{2, 300, 4, 16, 1, 128},
                       {1, 1100, 2, 64, 2, 128},
                       {2, 512, 8, 64, 1, 128},
                       {1, 77, 4, 5, 2, 64}}) {
    SsdArgs g = to_cuda(random_args(s, false, rng));
    const Tensor dy = on_cuda(testing::random_tensor({s.batch, s.seq_len, s.n_heads, s.head_dim}, rng));
    const SsdGrads ref = cuda_kernels().ssd.bwd_exact(g, dy);
    g.fast_bf16 = true;
    expect_close(cuda_kernels().ssd.bwd_gemm(g, dy), ref, 2e-2f, "fast " + describe(s, false), 5e-2f);
  }
}

// The fused tensor-core backward against the exact fp32 scan run on the same inputs. x, B, C and dy
// are drawn as bf16 values (the fused kernel rounds its inputs to bf16: with one token, C·B of one
// pair can cancel to a small value whose input rounding is 4% of it), so what is compared is the
// kernel's own rounding: the chunk states in bf16, the Q×Q tiles M and dM∘L as bf16 pairs hi + lo
// (about 16 bits), fp32 accumulation. Up to one chunk (64 tokens) there are no chunk states, so
// only the pairs and the fp32 sums round: 1e-4. Longer sequences get the bf16 bounds of the GEMM
// form's fast mode. Around the 64-token chunks (1, 63, 64, 65 tokens), ragged tails over several
// chunks and superchunks, batch 2, 1 and 2 groups, D per head and per channel. Each gradient's worst
// diff is printed, so a failure names the wrong term.
TEST(SsdBwdCuda, FusedMatchesExact) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(11);
  const Case cases[] = {{1, 1, 4, 64, 1, 128},   {2, 63, 4, 64, 2, 128},  {1, 64, 4, 64, 1, 128},
                        {2, 65, 4, 64, 2, 128},  {1, 300, 4, 64, 1, 128}, {2, 777, 4, 64, 2, 128},
                        {1, 777, 8, 64, 1, 128}, {2, 512, 8, 64, 1, 128}};
  for (const Case& s : cases) {
    for (bool d_per_channel : {false, true}) {
      SsdArgs a = random_args(s, d_per_channel, rng);
      for (Tensor* t : {&a.x, &a.B, &a.C}) *t = t->to(DType::bf16).to(DType::f32);
      SsdArgs g = to_cuda(a);
      const Tensor dy = on_cuda(testing::random_tensor({s.batch, s.seq_len, s.n_heads, s.head_dim}, rng)
                                    .to(DType::bf16)
                                    .to(DType::f32));
      ASSERT_TRUE(cuda_kernels().ssd.bwd_fast_supported(g)) << describe(s, d_per_channel);
      const SsdGrads ref = cuda_kernels().ssd.bwd_exact(g, dy);
      g.fast_bf16 = true;
      const SsdGrads got = cuda_kernels().ssd.bwd_fast(g, dy);
      const std::string where = "fused " + describe(s, d_per_channel);
      std::printf("%s: dx %.2e ddt %.2e dA %.2e dB %.2e dC %.2e dD %.2e\n", where.c_str(),
                  scaled_max_diff(got.dx, ref.dx), scaled_max_diff(got.ddt, ref.ddt),
                  scaled_max_diff(got.dA, ref.dA), scaled_max_diff(got.dB, ref.dB),
                  scaled_max_diff(got.dC, ref.dC), scaled_max_diff(got.dD, ref.dD));
      if (s.seq_len <= 64)
        expect_close(got, ref, 1e-4f, where);
      else
        expect_close(got, ref, 2e-2f, where, 5e-2f);
    }
  }
}

// bf16 tensors in (x, B, C, dy: read as they are, no rounding pass) give the f32-tensor path's
// gradients on the same values: the same bf16 operands reach the same kernels. Only dA and dD, summed
// by atomics in a run-dependent order, may differ in their last bits. The forward with bf16 tensors
// and bf16_out returns the f32 path's y before its widening, bit for bit, and the same final state.
TEST(SsdBwdCuda, FusedBf16TensorsMatchF32) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(17);
  for (const Case& s :
       {Case{2, 65, 4, 64, 2, 128}, Case{1, 777, 8, 64, 1, 128}, Case{2, 300, 4, 64, 1, 128}}) {
    for (bool d_per_channel : {false, true}) {
      SsdArgs a = random_args(s, d_per_channel, rng);
      for (Tensor* t : {&a.x, &a.B, &a.C}) *t = t->to(DType::bf16).to(DType::f32);
      SsdArgs g = to_cuda(a);
      g.fast_bf16 = true;
      const Tensor dy = on_cuda(testing::random_tensor({s.batch, s.seq_len, s.n_heads, s.head_dim}, rng)
                                    .to(DType::bf16)
                                    .to(DType::f32));
      SsdArgs g16 = g;
      for (Tensor* t : {&g16.x, &g16.B, &g16.C}) *t = t->to(DType::bf16);
      const std::string where = "bf16 tensors " + describe(s, d_per_channel);
      ASSERT_TRUE(cuda_kernels().ssd.bwd_fast_supported(g16)) << where;
      const SsdGrads ref = cuda_kernels().ssd.bwd_fast(g, dy);
      const SsdGrads got = cuda_kernels().ssd.bwd_fast(g16, dy.to(DType::bf16));
      for (const Tensor* t : {&got.dx, &got.ddt, &got.dA, &got.dB, &got.dC, &got.dD})
        EXPECT_EQ(t->dtype(), DType::f32) << where;
      expect_close(got, ref, 1e-6f, where);
      if (d_per_channel) continue;  // the tensor-core forward takes D per head
      Tensor state = Tensor::zeros({s.batch, s.n_heads, s.head_dim, s.d_state}, DType::f32, Device::cuda);
      Tensor state16 = state.copy();
      const Tensor y = ssd_fwd(exec, g, state);
      g16.bf16_out = true;
      const Tensor y16 = ssd_fwd(exec, g16, state16);
      ASSERT_EQ(y16.dtype(), DType::bf16) << where;
      EXPECT_EQ(scaled_max_diff(y16.to(DType::f32), y), 0.0f) << where;
      EXPECT_EQ(scaled_max_diff(state16, state), 0.0f) << where;
    }
  }
  SsdArgs mixed = to_cuda(random_args({1, 8, 2, 64, 1, 128}, false, rng));
  mixed.x = mixed.x.to(DType::bf16);  // x bf16 with f32 B, C: not the fused kernel's
  EXPECT_FALSE(cuda_kernels().ssd.bwd_fast_supported(mixed));
}

// Shapes the fused kernel does not compile for go elsewhere.
TEST(SsdBwdCuda, FusedSupportedShapes) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(13);
  EXPECT_FALSE(
      cuda_kernels().ssd.bwd_fast_supported(to_cuda(random_args({1, 8, 2, 32, 1, 128}, false, rng))));
  EXPECT_FALSE(cuda_kernels().ssd.bwd_fast_supported(to_cuda(random_args({1, 8, 2, 64, 1, 64}, false, rng))));
  EXPECT_TRUE(cuda_kernels().ssd.bwd_fast_supported(to_cuda(random_args({1, 8, 2, 64, 2, 128}, true, rng))));
}

}  // namespace
}  // namespace mamba::ops
