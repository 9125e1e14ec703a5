// Mamba-2 state-space dual scan (SPEC.md §2.2 step 5, §2.3): per head h, channel p, state n
//   h_t[p,n] = exp(dt_t·A_h)·h_{t-1}[p,n] + dt_t·x_t[p]·B_t[g(h),n]
//   y_t[p]   = Σ_n C_t[g(h),n]·h_t[p,n] + D·x_t[p]
// `ssd_fwd` is the chunked form (§2.3), and for one token the recurrence (its front chooses);
// `ssd_ref` the sequential definition.
#pragma once
#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

struct SsdArgs {
  Tensor x;   // [batch, seq_len, n_heads, head_dim]   (contiguous)
  Tensor dt;  // [batch, seq_len, n_heads]             softplus(dt_raw + dt_bias), clamped; or raw
  Tensor A;   // [n_heads]                             −exp(A_log)
  Tensor B;   // [batch, seq_len, n_groups, d_state]   (contiguous)
  Tensor C;   // [batch, seq_len, n_groups, d_state]   (contiguous)
  Tensor D;   // [n_heads] or [n_heads * head_dim] (D_has_hdim)
  int64_t chunk_size = 256;
  // CUDA only: may run the bf16 tensor-core scan (ssd_fast.cu: bf16 x/B/C/y, fp32 state) where it
  // has a kernel (head_dim 64, d_state 128, D per head); the model sets it with bf16 weights.
  bool fast_bf16 = false;
  // CUDA, where the tensor-core scan runs: y returned in bf16 as the kernel writes it (no widening
  // pass; with bf16 x/B/C, nothing is converted). Else f32.
  bool bf16_out = false;
  // Forward only: when dt_bias [n_heads] is given, dt holds the raw projection (its last dim
  // contiguous, rows may be strided) and Δ = min(max(softplus(dt + dt_bias), dt_lo), dt_hi) is
  // taken by the op: inside the one-token CUDA step (decode: no pass of its own), else by
  // softplus_bias_clamp first. The same bits as passing that op's output as dt.
  Tensor dt_bias;
  float dt_lo = 0.0f, dt_hi = 0.0f;
};

// state: [batch, n_heads, head_dim, d_state] f32, continued and updated.
// Returns y: [batch, seq_len, n_heads, head_dim].
Tensor ssd_fwd(Exec& exec, const SsdArgs& args, Tensor& state);
Tensor ssd_ref(Exec& exec, const SsdArgs& args, Tensor& state);

// Gradients of a whole-sequence call from a zero state (training; ssd_bwd.cpp).
struct SsdGrads {
  Tensor dx;   // [batch, seq_len, n_heads, head_dim]
  Tensor ddt;  // [batch, seq_len, n_heads]
  Tensor dA;   // [n_heads]
  Tensor dB;   // [batch, seq_len, n_groups, d_state]
  Tensor dC;   // [batch, seq_len, n_groups, d_state]
  Tensor dD;   // shaped like args.D
};

// Sequential reverse recurrence (dS_{t-1} = exp(dt_t·A)·dS_t), re-running the forward one chunk
// at a time from states kept at chunk starts. dy: [batch, seq_len, n_heads, head_dim].
SsdGrads ssd_bwd(Exec& exec, const SsdArgs& args, const Tensor& dy);

}  // namespace mamba::ops
