// Mamba-2 one-token state update on CUDA (SPEC §2.4 step 2): per (batch, head, p, n)
//   state ← state·exp(dt·A) + dt·x[p]·B[n],   y[p] = Σ_n C[n]·state[p, n] + D·x[p]
// with y from the unrounded fp32 state. Memory-bound (the state is read and written once):
// 16-byte loads and stores. Raw-pointer launcher, checked on the host (throws mamba::Error).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace mamba::ops::cuda {

enum class StepDType { bf16, f32 };

// Strides in elements; the last dimension of every tensor is contiguous, and so is a head's state
// [head_dim, d_state]. B, C and state rows are read 4 elements at a time (aligned to 4 elements).
struct SsdStepParams {
  int batch = 0, n_heads = 0, head_dim = 0, n_groups = 0, d_state = 0;  // d_state a multiple of 4
  StepDType dtype = StepDType::bf16;                                    // of x, dt, B, C and y

  const void* x = nullptr;  // [batch, n_heads, head_dim]
  int64_t x_batch_stride = 0, x_head_stride = 0;
  const void* dt = nullptr;  // [batch, n_heads]  Δ, or raw when dt_softplus
  int64_t dt_batch_stride = 0, dt_head_stride = 0;
  const float* dt_bias = nullptr;  // [n_heads], or null; added before the softplus
  bool dt_softplus = false;        // dt ← softplus(dt + dt_bias) (§2.4: no dt_limit in the step)
  bool dt_clamp = false;           // then dt ← min(max(dt, dt_lo), dt_hi) (the model's dt_limit)
  float dt_lo = 0.0f, dt_hi = 0.0f;
  const float* A = nullptr;  // [n_heads]  −exp(A_log)
  const void* B = nullptr;   // [batch, n_groups, d_state]
  int64_t B_batch_stride = 0, B_group_stride = 0;
  const void* C = nullptr;  // [batch, n_groups, d_state]
  int64_t C_batch_stride = 0, C_group_stride = 0;
  const float* D = nullptr;  // [n_heads], or null

  float* state = nullptr;  // [batch, n_heads, head_dim, d_state] fp32, updated in place
  int64_t state_batch_stride = 0, state_head_stride = 0;
  void* y = nullptr;  // [batch, n_heads, head_dim]
  int64_t y_batch_stride = 0, y_head_stride = 0;
};

void ssd_step(const SsdStepParams& params, cudaStream_t stream);

}  // namespace mamba::ops::cuda
