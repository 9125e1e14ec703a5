// Random Mamba-3 gate parameters shared by the gates' CUDA forward and backward tests.
#pragma once
#include <cstdint>
#include <random>

#include "cuda_testing.h"
#include "ops/mamba3_gates/mamba3_gates.h"
#include "testing.h"

namespace mamba::ops::testing_m3 {

struct GateDims {
  int64_t batch, seq_len, n_heads, head_dim, d_state, n_groups, rank;
  bool mimo;
};

// Gates with rope_fraction 0.5 (d_state / 4 angles), A_floor 1e-4 and random biases and norm weights.
inline Mamba3Gates random_gates(const GateDims& d, Mamba3Rope rope, std::mt19937& rng) {
  using mamba::testing::random_tensor;
  const int64_t S = d.d_state / 4;
  return {d.n_heads,
          d.head_dim,
          d.d_state,
          d.n_groups,
          d.rank,
          S,
          1e-4f,
          d.mimo,
          rope,
          random_tensor({d.n_heads}, rng),
          random_tensor({d.n_heads, d.rank, d.d_state}, rng),
          random_tensor({d.n_heads, d.rank, d.d_state}, rng),
          random_tensor({d.d_state}, rng),
          random_tensor({d.d_state}, rng)};
}

inline Mamba3Gates gates_on_cuda(Mamba3Gates g) {
  for (Tensor* t : {&g.dt_bias, &g.B_bias, &g.C_bias, &g.B_norm_weight, &g.C_norm_weight})
    *t = mamba::testing::on_cuda(*t);
  return g;
}

}  // namespace mamba::ops::testing_m3
