// Random Mamba-3 scan inputs shared by the scan's CPU, CUDA and backward tests (one draw order, so
// every test sees inputs of the same ranges: adt ≤ 0, dt in (0.01, 0.5), λ in (0.01, 0.99)).
#pragma once
#include <cstdint>
#include <random>

#include "ops/mamba3_scan/mamba3_scan.h"
#include "testing.h"

namespace mamba::ops::testing_m3 {

struct ScanShape {
  int64_t batch, seq_len, rank, n_heads, head_dim, d_state;
  bool mimo;  // false: SISO (mimo_x undefined)
  int64_t chunk_size;
};

inline Mamba3ScanArgs random_scan_args(const ScanShape& c, std::mt19937& rng) {
  using mamba::testing::random_tensor;
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
  a.chunk_size = c.chunk_size;
  return a;
}

// The same arguments with every tensor moved to `device` (undefined ones stay undefined).
inline Mamba3ScanArgs scan_args_on(const Mamba3ScanArgs& a, Device device) {
  Mamba3ScanArgs g = a;
  for (Tensor* t : {&g.x, &g.q, &g.k, &g.adt, &g.dt, &g.trap, &g.D, &g.mimo_x})
    if (t->defined()) *t = t->to(device);
  return g;
}

}  // namespace mamba::ops::testing_m3
