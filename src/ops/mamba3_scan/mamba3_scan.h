// Mamba-3 scan (SPEC.md §3.4-§3.5): the exponential-trapezoidal recurrence over pre-rotated
// queries/keys, SISO (mimo_rank 1) and MIMO (any rank). Continues from and updates an explicit
// state, so a whole-sequence call, a chunked prefill and a one-token step share one contract.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "ops/exec.h"

namespace mamba::ops {

// Recurrent state of one Mamba-3 layer, carried between calls. All f32, contiguous.
// A fresh sequence has all three zeroed (then the beta term of the first token vanishes).
struct Mamba3ScanState {
  Tensor ssm;     // [batch, n_heads, head_dim, d_state]  S after the last token seen
  Tensor k_prev;  // [batch, mimo_rank, n_heads, d_state] rotated, biased key of the last token
  Tensor v_prev;  // [batch, n_heads, head_dim]           raw x of the last token
};

// Inputs of one call. All f32 (x, q, k may be bf16 on CUDA: bf16_operands), contiguous. Per
// token t, head h, rank r:
//   v_{t,r} = x_t ⊙ mimo_x[h, r, :]   (x_t itself when mimo_x is undefined: SISO)
//   alpha_t = exp(adt_t), beta_t = (1 - trap_t)·dt_t·alpha_t, gamma_t = trap_t·dt_t
//   S_t = alpha_t·S_{t-1} + beta_t·Σ_r v_{t-1,r} k_{t-1,r}ᵀ + gamma_t·Σ_r v_{t,r} k_{t,r}ᵀ
//   y_{t,r} = S_t·q_{t,r} + D_h·v_{t,r}
// where token -1 is the state's (k_prev, v_prev).
struct Mamba3ScanArgs {
  Tensor x;       // [batch, seq_len, n_heads, head_dim]
  Tensor q;       // [batch, seq_len, mimo_rank, n_heads, d_state]  rotated, biased
  Tensor k;       // [batch, seq_len, mimo_rank, n_heads, d_state]  rotated, biased
  Tensor adt;     // [batch, seq_len, n_heads]  Δ·A (<= 0)
  Tensor dt;      // [batch, seq_len, n_heads]  Δ (> 0)
  Tensor trap;    // [batch, seq_len, n_heads]  λ = sigmoid(trap_raw), already applied
  Tensor D;       // [n_heads]
  Tensor mimo_x;  // [n_heads, mimo_rank, head_dim], or undefined for SISO
  int64_t chunk_size = 64;
  // CUDA only: a whole-sequence call may run the bf16 tensor-core scan (mamba3_scan_fast.cu: bf16
  // x/q/k/y, fp32 state) where it has a kernel (SISO or MIMO rank 2/4, head_dim 64, d_state 128);
  // bf16 weights set it (a precision choice of the model, not a kernel choice).
  bool fast_bf16 = false;
  // The forward of a training step: the operands stay f32, which the backward needs. Otherwise
  // (inference) mamba3_prepare_fwd's front chooses bf16_operands.
  bool for_backward = false;
  // CUDA inference only: with fast_bf16, mamba3_prepare_fwd writes q and k as bf16 (same shapes,
  // rounded to nearest: what the tensor-core scan would round them to) and x as bf16, so the scan
  // reads them without a conversion pass. Set by mamba3_prepare_fwd's front where the tensor-core
  // scan runs (fast_bf16, not for_backward, a CUDA proj, its shapes); a test may set it itself.
  // The CUDA scan accepts bf16 x/q/k on every path (widening them to f32 where it has no bf16
  // kernel); the CPU ops and the backward take f32 only (the backward rejects bf16 operands).
  bool bf16_operands = false;
};

// Whole-sequence chunked form (§3.5); one token takes the recurrence (the front chooses). y: [batch, seq_len,
// mimo_rank, n_heads, head_dim], allocated when undefined (all three functions); given, it is written in
// place.
void mamba3_scan_fwd(Exec& exec, const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y);

// Naive sequential recurrence, token by token (the definition above); the test oracle.
void mamba3_scan_ref(Exec& exec, const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y);

// One token (seq_len == 1), the recurrence; same contract. Allocation-free when y is given.
// mamba3_scan_fwd takes this path itself for one token.
void mamba3_scan_step(Exec& exec, const Mamba3ScanArgs& args, Mamba3ScanState& state, Tensor& y);

// Gradients of a whole-sequence call from a zero state (training; mamba3_scan_bwd.cpp).
struct Mamba3ScanGrads {
  Tensor dx;         // [batch, seq_len, n_heads, head_dim]
  Tensor dq, dk;     // [batch, seq_len, mimo_rank, n_heads, d_state]
  Tensor dadt, ddt;  // [batch, seq_len, n_heads]
  Tensor dtrap;      // [batch, seq_len, n_heads]  w.r.t. λ (args.trap, after the sigmoid)
  Tensor dD;         // [n_heads]
  Tensor dmimo_x;    // [n_heads, mimo_rank, head_dim] (MIMO only)
};

// Reverse of the recurrence, token by token (dS_{t-1} = α_t·dS_t; the pending β term makes the
// key/value gradient of token t γ_t·dS_t + β_{t+1}·dS_{t+1}), re-running the forward one chunk
// of `chunk_size` tokens at a time from saved chunk-entry states.
// dy: [batch, seq_len, mimo_rank, n_heads, head_dim].
Mamba3ScanGrads mamba3_scan_bwd(Exec& exec, const Mamba3ScanArgs& args, const Tensor& dy);

}  // namespace mamba::ops
