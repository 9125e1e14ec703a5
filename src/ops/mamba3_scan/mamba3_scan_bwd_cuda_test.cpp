// Mamba-3 scan backward on CUDA vs the CPU mamba3_scan_bwd on random inputs: lengths 1, 7, 65, 200
// (one chunk, a partial one, several with a partial tail), SISO and MIMO ranks 2 and 4, d_state 16
// and 64, head_dim from 5 to 64, chunk sizes 1, 16, 64 and 100 (the CUDA paths cap their chunk at
// 64), every field of Mamba3ScanGrads. Each case runs the dispatching mamba3_scan_bwd, the exact
// kernels, and for SISO the GEMM path (mamba3_scan_bwd_gemm.cu) directly. Tolerance 1e-4 of the
// largest reference value per field: every output is an fp32 sum over at most a few hundred tokens
// of O(1) terms, summed in another order (the GEMM path's dadt is a suffix sum of row-minus-column
// sums of the chunk's mask gradient, the same order of terms). The fused tensor-core backward
// (bf16 operands) against the exact kernels with bf16 bounds. Label `cuda`.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/kernels.h"
#include "ops/mamba3_scan/mamba3_scan.h"
#include "ops/mamba3_scan/mamba3_scan_testing.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::random_tensor;
using testing::scaled_max_diff;

struct Config {
  int64_t batch, seq_len, rank, n_heads, head_dim, d_state, chunk;
  bool mimo;
};

Mamba3ScanArgs random_args(const Config& c, std::mt19937& rng) {
  return testing_m3::random_scan_args(
      {c.batch, c.seq_len, c.rank, c.n_heads, c.head_dim, c.d_state, c.mimo, c.chunk}, rng);
}

Mamba3ScanArgs on_device(const Mamba3ScanArgs& a) {
  return testing_m3::scan_args_on(a, Device::cuda);
}

std::vector<Config> sweep() {
  std::vector<Config> out;
  const int64_t chunks[] = {16, 64, 100};
  int i = 0;
  for (int64_t L : {1, 7, 65, 200})
    for (int64_t N : {16, 64})
      for (int64_t R : {1, 2, 4}) {
        const int64_t P = (i % 3 == 0) ? 64 : (i % 3 == 1) ? 16 : 5;
        out.push_back({2, L, R, 3, P, N, chunks[i % 3], R > 1});
        ++i;
      }
  out.push_back({1, 130, 1, 2, 128, 128, 64, false});  // the largest head_dim, d_state over 64
  out.push_back({1, 40, 2, 1, 33, 256, 16, true});
  out.push_back({2, 9, 1, 2, 8, 16, 1, false});       // one-token chunks: every β term crosses one
  out.push_back({1, 193, 1, 4, 64, 128, 64, false});  // the benchmark's head shape, a 1-token tail
  out.push_back({3, 50, 1, 2, 7, 33, 100, false});    // odd sizes (not multiples of 4 or 32)
  return out;
}

using BwdFn = Mamba3ScanGrads (*)(const Mamba3ScanArgs&, const Tensor&);

struct Path {
  const char* name;
  BwdFn fn;
};

// The paths a case runs: the dispatcher, the exact kernels, and the GEMM path where it applies.
std::vector<Path> paths_for(const Mamba3ScanArgs& a) {
  const BwdFn dispatch = [](const Mamba3ScanArgs& x, const Tensor& dy) {
    return mamba3_scan_bwd(exec, x, dy);
  };
  std::vector<Path> out{{"dispatch", dispatch}, {"exact", cuda_kernels().mamba3_scan.bwd_exact}};
  if (cuda_kernels().mamba3_scan.bwd_gemm_supported(a))
    out.push_back({"gemm", cuda_kernels().mamba3_scan.bwd_gemm});
  return out;
}

void expect_close(const Mamba3ScanGrads& got, const Mamba3ScanGrads& ref, bool mimo, const std::string& what,
                  float tol = 1e-4f) {
  EXPECT_LT(scaled_max_diff(got.dx, ref.dx), tol) << what << " dx";
  EXPECT_LT(scaled_max_diff(got.dq, ref.dq), tol) << what << " dq";
  EXPECT_LT(scaled_max_diff(got.dk, ref.dk), tol) << what << " dk";
  EXPECT_LT(scaled_max_diff(got.dadt, ref.dadt), tol) << what << " dadt";
  EXPECT_LT(scaled_max_diff(got.ddt, ref.ddt), tol) << what << " ddt";
  EXPECT_LT(scaled_max_diff(got.dtrap, ref.dtrap), tol) << what << " dtrap";
  EXPECT_LT(scaled_max_diff(got.dD, ref.dD), tol) << what << " dD";
  if (mimo) {
    ASSERT_TRUE(got.dmimo_x.defined()) << what;
    EXPECT_LT(scaled_max_diff(got.dmimo_x, ref.dmimo_x), tol) << what << " dmimo_x";
  } else {
    EXPECT_FALSE(got.dmimo_x.defined()) << what;
  }
}

TEST(Mamba3ScanBwdCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(11);
  int gemm_cases = 0;
  for (const Config& c : sweep()) {
    const std::string what = std::string(c.mimo ? "MIMO" : "SISO") + " R=" + std::to_string(c.rank) +
                             " L=" + std::to_string(c.seq_len) + " P=" + std::to_string(c.head_dim) +
                             " N=" + std::to_string(c.d_state) + " chunk=" + std::to_string(c.chunk);
    const Mamba3ScanArgs a = random_args(c, rng);
    const Tensor dy = random_tensor({c.batch, c.seq_len, c.rank, c.n_heads, c.head_dim}, rng);
    const Mamba3ScanGrads ref = mamba3_scan_bwd(exec, a, dy);
    const Mamba3ScanArgs da = on_device(a);
    const Tensor ddy = on_cuda(dy);
    for (const Path& path : paths_for(da)) {
      expect_close(path.fn(da, ddy), ref, c.mimo, what + " [" + path.name + "]");
      gemm_cases += std::string(path.name) == "gemm";
    }
  }
  EXPECT_EQ(gemm_cases, 12);  // every SISO case took the GEMM path too
}

// A wider sequence than the sweep (many chunks, values carried far) with the state decaying slowly
// (α near 1), where the chunk carries and the reverse cumsum of dadt matter most.
TEST(Mamba3ScanBwdCuda, LongSlowDecay) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(12);
  const Config c{1, 1000, 1, 2, 64, 64, 64, false};
  Mamba3ScanArgs a = random_args(c, rng);
  a.adt = random_tensor({1, c.seq_len, c.n_heads}, rng, -0.02f, 0.0f);
  const Tensor dy = random_tensor({1, c.seq_len, 1, c.n_heads, c.head_dim}, rng);
  const Mamba3ScanGrads ref = mamba3_scan_bwd(exec, a, dy);
  const Mamba3ScanArgs da = on_device(a);
  const Tensor ddy = on_cuda(dy);
  for (const Path& path : paths_for(da)) expect_close(path.fn(da, ddy), ref, false, path.name);
}

// The bench's value ranges (dt up to 0.1, adt down to −0.8, λ over [0, 1]) at d_state 128 over
// several chunks, batch 2: the GEMM path against the exact kernels and the CPU.
TEST(Mamba3ScanBwdCuda, GemmPathBenchRanges) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(13);
  const Config c{2, 300, 1, 3, 64, 128, 64, false};
  Mamba3ScanArgs a = random_args(c, rng);
  a.adt = random_tensor({c.batch, c.seq_len, c.n_heads}, rng, -0.8f, -0.001f);
  a.dt = random_tensor({c.batch, c.seq_len, c.n_heads}, rng, 0.001f, 0.1f);
  a.trap = random_tensor({c.batch, c.seq_len, c.n_heads}, rng, 0.0f, 1.0f);
  const Tensor dy = random_tensor({c.batch, c.seq_len, 1, c.n_heads, c.head_dim}, rng);
  const Mamba3ScanGrads ref = mamba3_scan_bwd(exec, a, dy);
  const Mamba3ScanArgs da = on_device(a);
  const Tensor ddy = on_cuda(dy);
  const Mamba3ScanGrads exact = cuda_kernels().mamba3_scan.bwd_exact(da, ddy),
                        gemm = cuda_kernels().mamba3_scan.bwd_gemm(da, ddy);
  expect_close(gemm, ref, false, "gemm vs cpu");
  expect_close(gemm, exact, false, "gemm vs exact");
}

// dD_h = Σ dy·x over every (batch, token, channel), summed by the GEMM path per chunk in double and
// then over the B·nc chunk parts by one block per head (one slice), several slices plus a finish
// (B·nc over one slice), or the slice cap (B·nc far over it; one-token chunks): within 1e-6 of the sum of
// |dy·x| from the host's double sum. The Table 5b shape (batch 256, 160 tokens, d_state 64) also checks every
// gradient against the exact kernels.
TEST(Mamba3ScanBwdCuda, GemmDdReduction) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(16);
  const Config cases[] = {{256, 160, 1, 2, 64, 64, 64, false},
                          {70, 2000, 1, 1, 16, 16, 64, false},
                          {150000, 1, 1, 2, 1, 2, 1, false},
                          {3, 77, 1, 5, 7, 9, 16, false}};
  for (const Config& c : cases) {
    const std::string what = "B=" + std::to_string(c.batch) + " L=" + std::to_string(c.seq_len);
    const Mamba3ScanArgs a = random_args(c, rng);
    const Tensor dy = random_tensor({c.batch, c.seq_len, 1, c.n_heads, c.head_dim}, rng);
    const Mamba3ScanArgs da = on_device(a);
    const Tensor ddy = on_cuda(dy);
    const Mamba3ScanGrads got = cuda_kernels().mamba3_scan.bwd_gemm(da, ddy);
    const std::vector<float> x = a.x.to_vector(), g = dy.to_vector(), dD = got.dD.to_vector();
    const int64_t H = c.n_heads, P = c.head_dim;
    std::vector<double> sum(H, 0.0), mag(H, 0.0);
    for (size_t i = 0; i < x.size(); ++i) {
      const int64_t h = static_cast<int64_t>(i) / P % H;
      sum[h] += static_cast<double>(x[i]) * g[i];
      mag[h] += std::abs(static_cast<double>(x[i]) * g[i]);
    }
    for (int64_t h = 0; h < H; ++h)
      EXPECT_LE(std::abs(dD[h] - sum[h]), 1e-6 * mag[h]) << what << " head " << h;
    if (c.batch == 256)
      expect_close(got, cuda_kernels().mamba3_scan.bwd_exact(da, ddy), false, what + " vs exact");
  }
}

// The fused tensor-core backward (x, q, k, dy, the chunk states and the Q×Q masks rounded to bf16,
// fp32 accumulation) against the exact kernels, with the bf16 bounds of the Mamba-2 fused backward:
// around its 64-token chunks (1, 63, 64, 65, 128 tokens: the row-Q terms that cross into the next
// chunk's first token), ragged tails over several chunks, batch 2, the bench's value ranges. x, q, k
// and dy are drawn as bf16 values, so the bound measures the kernel's own rounding, not that of its
// inputs (a q·k pair that cancels makes the latter large relative to it). Each gradient's worst diff
// is printed, so a failure names the wrong term.
TEST(Mamba3ScanBwdCuda, FusedMatchesExact) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(14);
  const Config cases[] = {{1, 1, 1, 2, 64, 128, 64, false},   {2, 63, 1, 2, 64, 128, 64, false},
                          {1, 64, 1, 3, 64, 128, 64, false},  {2, 65, 1, 2, 64, 128, 64, false},
                          {1, 128, 1, 2, 64, 128, 64, false}, {2, 300, 1, 3, 64, 128, 64, false},
                          {1, 777, 1, 2, 64, 128, 64, false}};
  for (const Config& c : cases) {
    for (bool bench_ranges : {false, true}) {
      Mamba3ScanArgs a = random_args(c, rng);
      if (bench_ranges) {
        a.adt = random_tensor({c.batch, c.seq_len, c.n_heads}, rng, -0.8f, -0.001f);
        a.dt = random_tensor({c.batch, c.seq_len, c.n_heads}, rng, 0.001f, 0.1f);
        a.trap = random_tensor({c.batch, c.seq_len, c.n_heads}, rng, 0.0f, 1.0f);
      }
      for (Tensor* t : {&a.x, &a.q, &a.k}) *t = t->to(DType::bf16).to(DType::f32);
      const Tensor dy = on_cuda(
          random_tensor({c.batch, c.seq_len, 1, c.n_heads, c.head_dim}, rng).to(DType::bf16).to(DType::f32));
      Mamba3ScanArgs da = on_device(a);
      ASSERT_TRUE(cuda_kernels().mamba3_scan.bwd_fast_supported(da));
      const Mamba3ScanGrads ref = cuda_kernels().mamba3_scan.bwd_exact(da, dy);
      da.fast_bf16 = true;
      const Mamba3ScanGrads got = cuda_kernels().mamba3_scan.bwd_fast(da, dy);
      const std::string what = "fused B=" + std::to_string(c.batch) + " L=" + std::to_string(c.seq_len) +
                               " H=" + std::to_string(c.n_heads) + (bench_ranges ? " bench ranges" : "");
      std::printf("%s: dx %.2e dq %.2e dk %.2e dadt %.2e ddt %.2e dtrap %.2e dD %.2e\n", what.c_str(),
                  scaled_max_diff(got.dx, ref.dx), scaled_max_diff(got.dq, ref.dq),
                  scaled_max_diff(got.dk, ref.dk), scaled_max_diff(got.dadt, ref.dadt),
                  scaled_max_diff(got.ddt, ref.ddt), scaled_max_diff(got.dtrap, ref.dtrap),
                  scaled_max_diff(got.dD, ref.dD));
      expect_close(got, ref, false, what, 2e-2f);
    }
  }
  // MIMO and other shapes are not the fused kernel's.
  Mamba3ScanArgs mimo = on_device(random_args({1, 8, 2, 2, 64, 128, 64, true}, rng));
  EXPECT_FALSE(cuda_kernels().mamba3_scan.bwd_fast_supported(mimo));
  EXPECT_FALSE(cuda_kernels().mamba3_scan.bwd_fast_supported(
      on_device(random_args({1, 8, 1, 2, 64, 64, 64, false}, rng))));
}

// bf16 tensors in (x, q, k, dy: read as they are) give the f32-tensor path's gradients on the same
// values (dD, summed by atomics, up to its last bits); the forward writes a bf16 y directly, equal
// to the f32 path's y (bf16 in the kernel, widened) and the same states.
TEST(Mamba3ScanBwdCuda, FusedBf16TensorsMatchF32) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(15);
  for (const Config& c :
       {Config{2, 65, 1, 2, 64, 128, 64, false}, Config{1, 777, 1, 2, 64, 128, 64, false}}) {
    Mamba3ScanArgs a = random_args(c, rng);
    for (Tensor* t : {&a.x, &a.q, &a.k}) *t = t->to(DType::bf16).to(DType::f32);
    const Tensor dy = on_cuda(
        random_tensor({c.batch, c.seq_len, 1, c.n_heads, c.head_dim}, rng).to(DType::bf16).to(DType::f32));
    Mamba3ScanArgs da = on_device(a);
    da.fast_bf16 = true;
    Mamba3ScanArgs d16 = da;
    for (Tensor* t : {&d16.x, &d16.q, &d16.k}) *t = t->to(DType::bf16);
    const std::string what = "bf16 tensors L=" + std::to_string(c.seq_len);
    ASSERT_TRUE(cuda_kernels().mamba3_scan.bwd_fast_supported(d16)) << what;
    const Mamba3ScanGrads ref = cuda_kernels().mamba3_scan.bwd_fast(da, dy);
    const Mamba3ScanGrads got = cuda_kernels().mamba3_scan.bwd_fast(d16, dy.to(DType::bf16));
    EXPECT_EQ(got.dx.dtype(), DType::f32) << what;
    expect_close(got, ref, false, what, 1e-6f);
    auto state = [&] {
      return Mamba3ScanState{
          Tensor::zeros({c.batch, c.n_heads, c.head_dim, c.d_state}, DType::f32, Device::cuda),
          Tensor::zeros({c.batch, 1, c.n_heads, c.d_state}, DType::f32, Device::cuda),
          Tensor::zeros({c.batch, c.n_heads, c.head_dim}, DType::f32, Device::cuda)};
    };
    Mamba3ScanState s32 = state(), s16 = state();
    Tensor y = Tensor::empty({c.batch, c.seq_len, 1, c.n_heads, c.head_dim}, DType::f32, Device::cuda);
    Tensor y16 = Tensor::empty(y.shape(), DType::bf16, Device::cuda);
    mamba3_scan_fwd(exec, da, s32, y);
    mamba3_scan_fwd(exec, d16, s16, y16);
    EXPECT_EQ(scaled_max_diff(y16.to(DType::f32), y), 0.0f) << what;
    EXPECT_EQ(scaled_max_diff(s16.ssm, s32.ssm), 0.0f) << what;
  }
}

}  // namespace
}  // namespace mamba::ops
