// Mamba-1 selective scan (SPEC.md §1.2 step 5, §1.3 step 4), f32 throughout:
//   δ = softplus(δ_raw + δ_bias); h_t = exp(δ_t·A)·h_{t-1} + δ_t·B_t·u_t;
//   y_t = C_t·h_t + D·u_t; y_t ← y_t·silu(z_t) (if z is given).
// Continues from and updates an explicit state (zeros for a fresh sequence).
#pragma once
#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

struct SelectiveScanArgs {
  Tensor u;           // [batch, seq_len, d_inner]   post-conv x (contiguous)
  Tensor delta;       // [batch, seq_len, d_inner]   δ_raw, before bias and softplus (contiguous)
  Tensor delta_bias;  // [d_inner]
  Tensor A;           // [d_inner, d_state]          −exp(A_log)
  Tensor B;           // [batch, seq_len, d_state]   rows may be strided, last dim contiguous
  Tensor C;           // [batch, seq_len, d_state]   rows may be strided, last dim contiguous
  Tensor D;           // [d_inner]
  Tensor z;           // [batch, seq_len, d_inner] gate (rows may be strided), or undefined
  // Optional [batch, seq_len, d_inner] f32 contiguous that the CPU scan writes y into and returns
  // (it may be u or delta: each value is read before its y is written), so inference holds one
  // buffer fewer; other kernels may return a new tensor.
  Tensor y_into;
};

// state: [batch, d_inner, d_state] (f32), updated to h after the last token.
// Returns y: [batch, seq_len, d_inner].
Tensor selective_scan_fwd(Exec& exec, const SelectiveScanArgs& args, Tensor& state);

// Gradients of a whole-sequence call from a zero state (training; selective_scan_bwd.cpp).
struct SelectiveScanGrads {
  Tensor du;           // [batch, seq_len, d_inner]
  Tensor ddelta;       // [batch, seq_len, d_inner]  w.r.t. δ_raw (before bias and softplus)
  Tensor ddelta_bias;  // [d_inner]
  Tensor dA;           // [d_inner, d_state]
  Tensor dB;           // [batch, seq_len, d_state]
  Tensor dC;           // [batch, seq_len, d_state]
  Tensor dD;           // [d_inner]
  Tensor dz;           // [batch, seq_len, d_inner], when args.z is defined
};

// Reverse-time scan: dy [batch, seq_len, d_inner] -> the gradients of every input.
SelectiveScanGrads selective_scan_bwd(Exec& exec, const SelectiveScanArgs& args, const Tensor& dy);

}  // namespace mamba::ops
