// Attention and rotary on CUDA vs the CPU ops: GQA groups, head_dim 8..256, a prefill at
// position 0 and later chunks/single queries over a cache longer than one key tile. Label `cuda`.
#include <gtest/gtest.h>

#include "cuda_testing.h"
#include "exec_testing.h"
#include "ops/attention/attention.h"
#include "testing.h"

namespace mamba::ops {
namespace {

using testing::on_cuda;
using testing::random_tensor;
using testing::scaled_max_diff;

TEST(AttentionCuda, MatchesCpu) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(1);
  struct Case {
    int64_t batch, seq_len, n_heads, n_kv, head_dim, pos, capacity;
  };
  for (const Case c : {Case{1, 1, 2, 1, 8, 0, 4},
                       {2, 17, 4, 2, 16, 0, 20},
                       {1, 5, 6, 3, 64, 700, 800},
                       {2, 1, 4, 4, 128, 300, 301},
                       {1, 3, 2, 1, 256, 9, 12},
                       {1, 300, 2, 2, 32, 0, 300}}) {
    const Tensor q = random_tensor({c.batch, c.seq_len, c.n_heads, c.head_dim}, rng);
    const Tensor k = random_tensor({c.batch, c.capacity, c.n_kv, c.head_dim}, rng, -2.0f, 2.0f);
    const Tensor v = random_tensor({c.batch, c.capacity, c.n_kv, c.head_dim}, rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const Tensor ref = attention_fwd(exec, q, k, v, c.pos, scale);
    EXPECT_LT(scaled_max_diff(attention_fwd(exec, on_cuda(q), on_cuda(k), on_cuda(v), c.pos, scale), ref),
              1e-5f)
        << "T=" << c.seq_len << " pos=" << c.pos << " hd=" << c.head_dim;
  }
}

TEST(AttentionCuda, Rotary) {
  MAMBA_REQUIRE_CUDA();
  std::mt19937 rng(2);
  for (auto [seq_len, heads, head_dim, rotary_dim, pos0] :
       {std::tuple{1, 2, 8, 8, 0}, {7, 3, 16, 8, 5}, {33, 4, 64, 64, 1000}, {2, 2, 32, 0, 3}}) {
    for (bool interleaved : {false, true}) {
      Tensor x = random_tensor({2, seq_len, heads, head_dim}, rng);
      Tensor gx = on_cuda(x);
      rotary_apply(exec, x, rotary_dim, pos0, 10000.0f, interleaved);
      rotary_apply(exec, gx, rotary_dim, pos0, 10000.0f, interleaved);
      EXPECT_LT(scaled_max_diff(gx, x), 1e-5f) << "rotary_dim " << rotary_dim << " pos0 " << pos0;
    }
  }
}

}  // namespace
}  // namespace mamba::ops
