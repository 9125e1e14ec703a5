// attention_bwd and rotary_bwd on CUDA vs the CPU ops: grouped KV heads (group sizes 1, 2, 3),
// head dims up to 256, sequences shorter and longer than one key tile (256) and of odd lengths;
// rotary in both pairings, partial rotary dims and nonzero start positions. Label `cuda`.
#include <gtest/gtest.h>

#include <cmath>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/attention/attention.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::random_tensor;
using testing::scaled_max_diff;

TEST(AttentionBwdCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  struct Case {
    int64_t batch, seq_len, n_heads, n_kv, head_dim;
  };
  for (const Case c : {Case{1, 1, 2, 1, 8},
                       {2, 17, 4, 2, 16},
                       {1, 5, 6, 3, 64},
                       {2, 33, 4, 4, 128},
                       {1, 3, 2, 1, 256},
                       {1, 300, 2, 2, 32},
                       {1, 520, 3, 1, 24}}) {
    const Tensor q = random_tensor({c.batch, c.seq_len, c.n_heads, c.head_dim}, rng);
    const Tensor k = random_tensor({c.batch, c.seq_len, c.n_kv, c.head_dim}, rng, -2.0f, 2.0f);
    const Tensor v = random_tensor({c.batch, c.seq_len, c.n_kv, c.head_dim}, rng);
    const Tensor dout = random_tensor({c.batch, c.seq_len, c.n_heads, c.head_dim}, rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    Tensor dq, dk, dv, gdq, gdk, gdv;
    attention_bwd(exec, dout, q, k, v, scale, dq, dk, dv);
    attention_bwd(exec, on_cuda(dout), on_cuda(q), on_cuda(k), on_cuda(v), scale, gdq, gdk, gdv);
    const std::string what = "T=" + std::to_string(c.seq_len) + " heads " + std::to_string(c.n_heads) + "/" +
                             std::to_string(c.n_kv) + " hd=" + std::to_string(c.head_dim);
    EXPECT_LT(scaled_max_diff(gdq, dq), 2e-5f) << what;
    EXPECT_LT(scaled_max_diff(gdk, dk), 2e-5f) << what;
    EXPECT_LT(scaled_max_diff(gdv, dv), 2e-5f) << what;
  }
}

TEST(AttentionBwdCuda, Rotary) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  for (auto [seq_len, heads, head_dim, rotary_dim, pos0] : {std::tuple{1, 2, 8, 8, 0},
                                                            {7, 3, 16, 8, 5},
                                                            {33, 4, 64, 64, 1000},
                                                            {2, 2, 32, 0, 3},
                                                            {45, 1, 24, 10, 0}}) {
    for (bool interleaved : {false, true}) {
      Tensor dx = random_tensor({2, seq_len, heads, head_dim}, rng);
      Tensor gdx = on_cuda(dx);
      rotary_bwd(exec, dx, rotary_dim, pos0, 10000.0f, interleaved);
      rotary_bwd(exec, gdx, rotary_dim, pos0, 10000.0f, interleaved);
      EXPECT_LT(scaled_max_diff(gdx, dx), 1e-4f) << "rotary_dim " << rotary_dim << " pos0 " << pos0;
    }
  }
}

}  // namespace
}  // namespace mamba::ops
