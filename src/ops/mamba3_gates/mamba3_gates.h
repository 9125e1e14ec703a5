// Mamba-3's per-token input and output stages around the scan (SPEC.md §3.3, §3.4 output):
// `mamba3_prepare_fwd` turns the in_proj row into A·Δ, Δ, λ and rotated, biased q/k (advancing
// the cumulative angle state, kept mod 2π); `mamba3_combine_fwd` gates (or head-norms) the
// per-rank outputs and contracts the MIMO ranks.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "ops/exec.h"
#include "ops/mamba3_gates/mamba3_layout.h"
#include "ops/mamba3_scan/mamba3_scan.h"

namespace mamba::ops {

enum class Mamba3Rope { data_dependent, none, data_independent };

struct Mamba3Gates {
  int64_t n_heads, head_dim, d_state, n_groups, rank, n_rope_angles;
  float A_floor;
  bool half_split_pairs;  // MIMO: pairs (i, i + d_state/2); SISO: interleaved (2i, 2i+1)
  Mamba3Rope rope;
  Tensor dt_bias;        // [n_heads]
  Tensor B_bias;         // [n_heads, rank, d_state]
  Tensor C_bias;         // [n_heads, rank, d_state]
  Tensor B_norm_weight;  // [d_state]
  Tensor C_norm_weight;  // [d_state]

  // The columns of a proj row (mamba3_layout.h).
  Mamba3Layout layout() const {
    return mamba3_layout(n_heads, head_dim, d_state, n_groups, rank, n_rope_angles);
  }
};

// proj: [batch, seq_len, d_in_proj] laid out [z | x | B | C | dd_dt | dd_A | trap | angles] (§3.2).
// Fills args.q, args.k [batch, seq_len, rank, n_heads, d_state] and args.adt, args.dt, args.trap
// [batch, seq_len, n_heads] (allocating them); angle: [batch, n_heads, n_rope_angles], advanced.
void mamba3_prepare_fwd(Exec& exec, const Tensor& proj, const Mamba3Gates& g, Tensor& angle,
                        Mamba3ScanArgs& args);

// y: [batch, seq_len, rank, n_heads, head_dim]; z: [batch, seq_len, n_heads·head_dim] (rows may
// be strided). norm_weight [n_heads·head_dim] (defined = is_outproj_norm); mimo_z, mimo_o
// [n_heads, rank, head_dim] (undefined for SISO). Returns [batch, seq_len, n_heads·head_dim].
Tensor mamba3_combine_fwd(Exec& exec, const Tensor& y, const Tensor& z, const Tensor& norm_weight,
                          const Tensor& mimo_z, const Tensor& mimo_o);

// ---- Backward (mamba3_gates_bwd.cpp), for a whole sequence from a zero angle state. ----

// From the scan-input gradients, writes the columns [B | C | dd_dt | dd_A | trap | angles] of
// dproj ([batch, seq_len, d_in_proj], contiguous; z and x columns untouched) and accumulates into
// grads.dt_bias, B_bias, C_bias, B_norm_weight, C_norm_weight (a Mamba3Gates holding gradients).
// The angle is a cumsum of ω·Δ, so its gradient reaches both the angle columns and dd_dt.
void mamba3_prepare_bwd(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3ScanGrads& dscan,
                        Tensor& dproj, Mamba3Gates& grads);

// dout: [batch, seq_len, n_heads·head_dim] -> returns dy [batch, seq_len, rank, n_heads, head_dim],
// sets dz [batch, seq_len, n_heads·head_dim]; accumulates dnorm_weight, dmimo_z, dmimo_o (those
// whose parameter is defined).
Tensor mamba3_combine_bwd(Exec& exec, const Tensor& dout, const Tensor& y, const Tensor& z,
                          const Tensor& norm_weight, const Tensor& mimo_z, const Tensor& mimo_o, Tensor& dz,
                          Tensor& dnorm_weight, Tensor& dmimo_z, Tensor& dmimo_o);

}  // namespace mamba::ops
