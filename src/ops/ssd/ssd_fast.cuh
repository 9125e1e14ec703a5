// Mamba-2 chunked SSD forward on tensor cores (SPEC §2.3), and the chunked-scan engine it shares
// with the Mamba-3 SISO scan (§3.5 is §2.3 with separate off-diagonal/diagonal weights σ, γ).
// Raw-pointer launchers: bf16 x/B/C/y, fp32 dt/A/D and fp32 states; the params struct is checked
// on the host (throws mamba::Error) and the kernels trust it. Strides are in elements.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace mamba::ops::cuda {

// y = SSD(x, dt, A, B, C) + D·x, continuing from initial_state and returning the final state.
// The last dimension of x, B, C and y is contiguous and every row starts 16-byte aligned (their
// strides are multiples of 8 elements); a head's state [head_dim, d_state] is contiguous and
// 16-byte aligned (state strides multiples of 4).
struct SsdFastParams {
  int batch = 0, seq_len = 0, n_heads = 0, head_dim = 0, n_groups = 0, d_state = 0;
  int chunk_size = 256;  // tokens between stored inter-chunk states; a multiple of 64

  const __nv_bfloat16* x = nullptr;  // [batch, seq_len, n_heads, head_dim]
  int64_t x_batch_stride = 0, x_seq_stride = 0, x_head_stride = 0;
  const float* dt = nullptr;  // [batch, seq_len, n_heads]  softplus(dt_raw + dt_bias), clamped
  int64_t dt_batch_stride = 0, dt_seq_stride = 0, dt_head_stride = 0;
  const float* A = nullptr;          // [n_heads]  −exp(A_log)
  const __nv_bfloat16* B = nullptr;  // [batch, seq_len, n_groups, d_state]
  int64_t B_batch_stride = 0, B_seq_stride = 0, B_group_stride = 0;
  const __nv_bfloat16* C = nullptr;  // [batch, seq_len, n_groups, d_state]
  int64_t C_batch_stride = 0, C_seq_stride = 0, C_group_stride = 0;
  const float* D = nullptr;  // [n_heads], or null (no skip term)

  const float* initial_state = nullptr;  // [batch, n_heads, head_dim, d_state], or null (zeros)
  int64_t initial_state_batch_stride = 0, initial_state_head_stride = 0;
  float* final_state = nullptr;  // [batch, n_heads, head_dim, d_state], or null; may alias initial
  int64_t final_state_batch_stride = 0, final_state_head_stride = 0;

  __nv_bfloat16* y = nullptr;  // [batch, seq_len, n_heads, head_dim]
  int64_t y_batch_stride = 0, y_seq_stride = 0, y_head_stride = 0;

  void* workspace = nullptr;  // ssd_fast_workspace_bytes(*this) bytes of device memory
  size_t workspace_bytes = 0;
};

size_t ssd_fast_workspace_bytes(const SsdFastParams& params);
void ssd_fast_fwd(const SsdFastParams& params, cudaStream_t stream);

// ---- The engine (used by ssd_fast_fwd and mamba3_scan_fast_fwd; callers validate first) ----
// Per (batch, head), with per-token log-decay adt_t, off-diagonal weight σ_t, diagonal weight γ_t,
// a_t the inclusive cumsum of adt inside a chunk and H_in the state entering the chunk:
//   y_t   = exp(a_t)·(q_t·H_in) + Σ_{s<t} exp(a_t − a_s)·σ_s·(q_t·k_s)·x_s + γ_t·(q_t·k_t)·x_t + D·x_t
//   H_out = exp(a_last)·H_in + Σ_s exp(a_last − a_s)·σ_s·x_s k_sᵀ
// Mamba-2: adt = dt·A, σ = γ = dt, q = C, k = B. Mamba-3: adt given, γ = λ·dt,
// σ_t = γ_t + dt_{t+1}(1 − λ_{t+1}), plus the pending β term of (k_prev, v_prev) on entry.
// Mamba-3 MIMO (rank R > 1) is the same scan over R·seq_len rows (token t, rank r) with
// v_{t,r} = x_t ⊙ mimo_x[h, r, :]: a 64-row tile holds 64/R tokens, the rows of a token share its
// decay and weights, and "s < t" / "s = t" compare tokens (the same-token block is weighted by γ_t).
enum class ScanWeights { ssd, trapezoid };

struct ChunkedScanParams {
  int batch = 0, seq_len = 0, n_heads = 0, head_dim = 0, d_state = 0, heads_per_group = 1;
  int rank = 1;           // rows per token: 1, or the MIMO rank 2 or 4 (trapezoid only)
  int state_chunk = 256;  // tokens per stored inter-chunk state (multiple of the 64/rank-token tile)
  ScanWeights weights = ScanWeights::ssd;

  const __nv_bfloat16* x = nullptr;  // [batch, seq_len, n_heads, head_dim]
  int64_t x_batch_stride = 0, x_seq_stride = 0, x_head_stride = 0;
  const __nv_bfloat16* q = nullptr;  // [batch, seq_len, (rank,) n_heads / heads_per_group, d_state]
  int64_t q_batch_stride = 0, q_seq_stride = 0, q_group_stride = 0, q_rank_stride = 0;
  const __nv_bfloat16* k = nullptr;  // [batch, seq_len, (rank,) n_heads / heads_per_group, d_state]
  int64_t k_batch_stride = 0, k_seq_stride = 0, k_group_stride = 0, k_rank_stride = 0;
  const float* mimo_x = nullptr;  // [n_heads, rank, head_dim] when rank > 1: v_{t,r} = x_t ⊙ mimo_x[h, r]
  int64_t mimo_x_head_stride = 0, mimo_x_rank_stride = 0;
  const float* dt = nullptr;    // [batch, seq_len, n_heads]; adt and trap share these strides
  const float* adt = nullptr;   // trapezoid only
  const float* trap = nullptr;  // trapezoid only: λ = sigmoid(trap_raw)
  int64_t dt_batch_stride = 0, dt_seq_stride = 0, dt_head_stride = 0;
  const float* A = nullptr;  // [n_heads], ssd only
  const float* D = nullptr;  // [n_heads] or null

  const float* initial_state = nullptr;  // [batch, n_heads, head_dim, d_state] or null
  int64_t initial_state_batch_stride = 0, initial_state_head_stride = 0;
  const float* k_prev = nullptr;  // [batch, (rank,) n_heads, d_state] or null (trapezoid pending term)
  int64_t k_prev_batch_stride = 0, k_prev_head_stride = 0, k_prev_rank_stride = 0;
  const float* v_prev = nullptr;  // [batch, n_heads, head_dim], with k_prev
  int64_t v_prev_batch_stride = 0, v_prev_head_stride = 0;
  float* final_state = nullptr;  // [batch, n_heads, head_dim, d_state] or null
  int64_t final_state_batch_stride = 0, final_state_head_stride = 0;

  __nv_bfloat16* y = nullptr;  // [batch, seq_len, (rank,) n_heads, head_dim]
  int64_t y_batch_stride = 0, y_seq_stride = 0, y_head_stride = 0, y_rank_stride = 0;

  void* workspace = nullptr;  // chunked_scan_workspace_bytes(*this)
};

size_t chunked_scan_workspace_bytes(const ChunkedScanParams& params);
// Throws mamba::Error (unsupported) unless (head_dim, d_state, rank) has a compiled kernel.
void check_chunked_scan_dims(int head_dim, int d_state, const char* op, int rank = 1);
void chunked_scan_fwd(const ChunkedScanParams& params, cudaStream_t stream);

}  // namespace mamba::ops::cuda
