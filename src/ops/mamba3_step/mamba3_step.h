// Mamba-3 one-token step for decode (SPEC.md §3.3-§3.4 at seq_len 1): the gates (A·Δ, Δ, λ, the
// angle advance, RMS-normed biased and rotated q/k), the exponential-trapezoidal state update and
// the output stage (gate or head norm, MIMO contraction) from one in_proj row. On CUDA one kernel
// per step (mamba3_step_cuda.cu); elsewhere, and for shapes that kernel does not take, the
// composition mamba3_prepare_fwd -> mamba3_scan_step -> mamba3_combine_fwd, which it matches.
#pragma once
#include "core/tensor.h"
#include "ops/exec.h"
#include "ops/mamba3_gates/mamba3_gates.h"
#include "ops/mamba3_scan/mamba3_scan.h"

namespace mamba::ops {

// The mixer's parameters besides the gates (Mamba3ScanArgs / mamba3_combine_fwd).
struct Mamba3StepParams {
  Tensor D;            // [n_heads]
  Tensor mimo_x;       // [n_heads, rank, head_dim], undefined for SISO
  Tensor mimo_z;       // [n_heads, rank, head_dim], undefined for SISO
  Tensor mimo_o;       // [n_heads, rank, head_dim], undefined for SISO
  Tensor norm_weight;  // [n_heads·head_dim], defined = is_outproj_norm
};

// proj: [batch, d_in_proj] (rows may be strided) laid out [z | x | B | C | dd_dt | dd_A | trap |
// angles]. Advances angle [batch, n_heads, n_rope_angles] and state (ssm, k_prev, v_prev) in
// place; returns o [batch, n_heads·head_dim], the out_proj input.
Tensor mamba3_step(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w,
                   Tensor& angle, Mamba3ScanState& state);

// The unfused composition (the reference of the fused kernel's test).
Tensor mamba3_step_composed(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w,
                            Tensor& angle, Mamba3ScanState& state);

}  // namespace mamba::ops
