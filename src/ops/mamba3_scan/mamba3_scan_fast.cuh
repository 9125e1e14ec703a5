// Mamba-3 chunked scan forward on tensor cores (SPEC §3.5), SISO and MIMO (rank 2 or 4), parallel over
// (batch, head, chunk) so that one long sequence fills the GPU. Raw-pointer launcher: bf16 x/q/k/y,
// fp32 adt/dt/trap/D/mimo_x and fp32 state; checked on the host (throws mamba::Error). Same contract
// as ops::mamba3_scan_fwd: continues from (ssm, k_prev, v_prev) and leaves the state after the last
// token.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace mamba::ops::cuda {

// Strides are in elements; the last dimension of every tensor is contiguous, and rows of x, q, k
// and y start 16-byte aligned (strides multiples of 8); a head's ssm state [head_dim, d_state] is
// contiguous and 16-byte aligned. A state input and its output share their strides and may alias
// (in-place update); null inputs mean a fresh sequence (zeros).
// MIMO (mimo_rank R = 2 or 4): q, k, y, k_prev gain a rank index (its stride below; unused for
// SISO), v_{t,r} = x_t ⊙ mimo_x[h, r, :], and a chunk is 64/R tokens (64 (token, rank) rows).
struct Mamba3ScanFastParams {
  int batch = 0, seq_len = 0, n_heads = 0, head_dim = 0, d_state = 0;
  int mimo_rank = 1;    // R: 1 (SISO), 2 or 4
  int chunk_size = 64;  // tokens of the intra-chunk form: 64 / mimo_rank
  int state_chunk = 0;  // tokens between stored states, a multiple of chunk_size; 0: chosen here

  const __nv_bfloat16* x = nullptr;  // [batch, seq_len, n_heads, head_dim]   v_t = x_t (SISO)
  int64_t x_batch_stride = 0, x_seq_stride = 0, x_head_stride = 0;
  const __nv_bfloat16* q = nullptr;  // [batch, seq_len, (R,) n_heads, d_state]  rotated, biased
  int64_t q_batch_stride = 0, q_seq_stride = 0, q_head_stride = 0, q_rank_stride = 0;
  const __nv_bfloat16* k = nullptr;  // [batch, seq_len, (R,) n_heads, d_state]  rotated, biased
  int64_t k_batch_stride = 0, k_seq_stride = 0, k_head_stride = 0, k_rank_stride = 0;
  const float* mimo_x = nullptr;  // [n_heads, R, head_dim] (R > 1 only)
  int64_t mimo_x_head_stride = 0, mimo_x_rank_stride = 0;
  const float* adt = nullptr;   // [batch, seq_len, n_heads]  Δ·A (<= 0)
  const float* dt = nullptr;    // [batch, seq_len, n_heads]  Δ (> 0)
  const float* trap = nullptr;  // [batch, seq_len, n_heads]  λ = sigmoid(trap_raw)
  int64_t dt_batch_stride = 0, dt_seq_stride = 0, dt_head_stride = 0;  // shared by adt, dt, trap
  const float* D = nullptr;                                            // [n_heads], or null

  const float* ssm_in = nullptr;  // [batch, n_heads, head_dim, d_state]  S before the first token
  float* ssm_out = nullptr;       // [batch, n_heads, head_dim, d_state]  S after the last token
  int64_t ssm_batch_stride = 0, ssm_head_stride = 0;
  const float* k_prev_in =
      nullptr;                  // [batch, (R,) n_heads, d_state]  keys of the token before (with v_prev_in)
  float* k_prev_out = nullptr;  // [batch, (R,) n_heads, d_state]  keys of the last token (bf16 → f32)
  int64_t k_prev_batch_stride = 0, k_prev_head_stride = 0, k_prev_rank_stride = 0;
  const float* v_prev_in = nullptr;  // [batch, n_heads, head_dim]  x of the token before
  float* v_prev_out = nullptr;       // [batch, n_heads, head_dim]  x of the last token
  int64_t v_prev_batch_stride = 0, v_prev_head_stride = 0;

  __nv_bfloat16* y = nullptr;  // [batch, seq_len, (R,) n_heads, head_dim]
  int64_t y_batch_stride = 0, y_seq_stride = 0, y_head_stride = 0, y_rank_stride = 0;

  void* workspace = nullptr;  // mamba3_scan_fast_workspace_bytes(*this) bytes of device memory
  size_t workspace_bytes = 0;
};

size_t mamba3_scan_fast_workspace_bytes(const Mamba3ScanFastParams& params);
void mamba3_scan_fast_fwd(const Mamba3ScanFastParams& params, cudaStream_t stream);

}  // namespace mamba::ops::cuda
