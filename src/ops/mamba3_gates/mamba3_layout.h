// The columns of Mamba-3's in_proj output row (SPEC §3.2), in one place:
//   [z | x | B | C | dd_dt | dd_A | trap | angles]
// widths d_inner, d_inner, R·G·N, R·G·N, H, H, H, n_rope_angles (d_inner = H·head_dim). The
// architecture (models/mamba3.cpp) sizes in_proj with it; the gate and step ops read their columns
// from it (Mamba3Gates::layout()).
#pragma once
#include <cstdint>

namespace mamba::ops {

struct Mamba3Layout {
  int64_t z, x, b, c, dt, a, trap, angles;  // column offsets
  int64_t width;                            // d_in_proj
};

inline Mamba3Layout mamba3_layout(int64_t n_heads, int64_t head_dim, int64_t d_state, int64_t n_groups,
                                  int64_t rank, int64_t n_rope_angles) {
  const int64_t d_inner = n_heads * head_dim, bc = rank * n_groups * d_state;
  Mamba3Layout l{};
  l.z = 0;
  l.x = d_inner;
  l.b = 2 * d_inner;
  l.c = l.b + bc;
  l.dt = l.c + bc;
  l.a = l.dt + n_heads;
  l.trap = l.a + n_heads;
  l.angles = l.trap + n_heads;
  l.width = l.angles + n_rope_angles;
  return l;
}

}  // namespace mamba::ops
