// Mamba-3 scan backward on CUDA vs the CPU mamba3_scan_bwd on random inputs: lengths 1, 7, 65, 200
// (one chunk, a partial one, several with a partial tail), SISO and MIMO ranks 2 and 4, d_state 16
// and 64, head_dim from 5 to 64, chunk sizes 16, 64 and 100 (the CUDA op caps its chunk at 64), every
// field of Mamba3ScanGrads. Tolerance 1e-4 of the largest reference value per field: every output
// is an fp32 sum over at most a few hundred tokens of O(1) terms, summed in another order. Label `cuda`.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda_testing.h"
#include "ops/mamba3_scan/mamba3_scan.h"
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
  Mamba3ScanArgs a;
  const Shape qk{c.batch, c.seq_len, c.rank, c.n_heads, c.d_state}, per_token{c.batch, c.seq_len, c.n_heads};
  a.x = random_tensor({c.batch, c.seq_len, c.n_heads, c.head_dim}, rng);
  a.q = random_tensor(qk, rng);
  a.k = random_tensor(qk, rng);
  a.adt = random_tensor(per_token, rng, -1.0f, 0.0f);
  a.dt = random_tensor(per_token, rng, 0.01f, 0.5f);
  a.trap = random_tensor(per_token, rng, 0.01f, 0.99f);
  a.D = random_tensor({c.n_heads}, rng);
  if (c.mimo) a.mimo_x = random_tensor({c.n_heads, c.rank, c.head_dim}, rng, 0.0f, 1.0f);
  a.chunk_size = c.chunk;
  return a;
}

Mamba3ScanArgs on_device(const Mamba3ScanArgs& a) {
  Mamba3ScanArgs g = a;
  for (Tensor* t : {&g.x, &g.q, &g.k, &g.adt, &g.dt, &g.trap, &g.D, &g.mimo_x}) *t = on_cuda(*t);
  return g;
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
  return out;
}

TEST(Mamba3ScanBwdCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(11);
  for (const Config& c : sweep()) {
    const std::string what = std::string(c.mimo ? "MIMO" : "SISO") + " R=" + std::to_string(c.rank) +
                             " L=" + std::to_string(c.seq_len) + " P=" + std::to_string(c.head_dim) +
                             " N=" + std::to_string(c.d_state) + " chunk=" + std::to_string(c.chunk);
    const Mamba3ScanArgs a = random_args(c, rng);
    const Tensor dy = random_tensor({c.batch, c.seq_len, c.rank, c.n_heads, c.head_dim}, rng);
    const Mamba3ScanGrads ref = mamba3_scan_bwd(a, dy);
    const Mamba3ScanGrads got = mamba3_scan_bwd(on_device(a), on_cuda(dy));
    constexpr float tol = 1e-4f;
    EXPECT_LT(scaled_max_diff(got.dx, ref.dx), tol) << what << " dx";
    EXPECT_LT(scaled_max_diff(got.dq, ref.dq), tol) << what << " dq";
    EXPECT_LT(scaled_max_diff(got.dk, ref.dk), tol) << what << " dk";
    EXPECT_LT(scaled_max_diff(got.dadt, ref.dadt), tol) << what << " dadt";
    EXPECT_LT(scaled_max_diff(got.ddt, ref.ddt), tol) << what << " ddt";
    EXPECT_LT(scaled_max_diff(got.dtrap, ref.dtrap), tol) << what << " dtrap";
    EXPECT_LT(scaled_max_diff(got.dD, ref.dD), tol) << what << " dD";
    if (c.mimo) {
      ASSERT_TRUE(got.dmimo_x.defined()) << what;
      EXPECT_LT(scaled_max_diff(got.dmimo_x, ref.dmimo_x), tol) << what << " dmimo_x";
    } else {
      EXPECT_FALSE(got.dmimo_x.defined()) << what;
    }
  }
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
  const Mamba3ScanGrads ref = mamba3_scan_bwd(a, dy);
  const Mamba3ScanGrads got = mamba3_scan_bwd(on_device(a), on_cuda(dy));
  EXPECT_LT(scaled_max_diff(got.dx, ref.dx), 1e-4f);
  EXPECT_LT(scaled_max_diff(got.dq, ref.dq), 1e-4f);
  EXPECT_LT(scaled_max_diff(got.dk, ref.dk), 1e-4f);
  EXPECT_LT(scaled_max_diff(got.dadt, ref.dadt), 1e-4f);
  EXPECT_LT(scaled_max_diff(got.ddt, ref.ddt), 1e-4f);
  EXPECT_LT(scaled_max_diff(got.dtrap, ref.dtrap), 1e-4f);
  EXPECT_LT(scaled_max_diff(got.dD, ref.dD), 1e-4f);
}

}  // namespace
}  // namespace mamba::ops
