// Mamba-2 step kernel: one warp per 4 rows (head_dim) of a head's state, each lane 4 consecutive
// d_state entries per row, so the 4 rows' 16-byte loads are in flight together; y[p] is a warp
// sum. The state streams through once (cache-streaming loads and stores keep it out of L2).
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "ops/ssd/ssd_step.cuh"

namespace mamba::ops::cuda {

namespace {

constexpr int kRowsPerWarp = 4;
constexpr int kWarps = 8;

__device__ __forceinline__ float to_float(float v) {
  return v;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ void from_float(float v, float* out) {
  *out = v;
}
__device__ __forceinline__ void from_float(float v, __nv_bfloat16* out) {
  *out = __float2bfloat16(v);
}

__device__ __forceinline__ float4 load4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}

template <typename T>
__global__ void __launch_bounds__(32 * kWarps) ssd_step_kernel(const SsdStepParams p) {
  const int b = blockIdx.z, h = blockIdx.y, lane = threadIdx.x & 31;
  const int p0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kRowsPerWarp;
  if (p0 >= p.head_dim) return;
  const int g = h / (p.n_heads / p.n_groups);
  const T* x = static_cast<const T*>(p.x) + b * p.x_batch_stride + h * p.x_head_stride;
  const T* B = static_cast<const T*>(p.B) + b * p.B_batch_stride + g * p.B_group_stride;
  const T* C = static_cast<const T*>(p.C) + b * p.C_batch_stride + g * p.C_group_stride;
  float* state = p.state + b * p.state_batch_stride + h * p.state_head_stride;

  float dt = to_float(static_cast<const T*>(p.dt)[b * p.dt_batch_stride + h * p.dt_head_stride]);
  if (p.dt_bias) dt += p.dt_bias[h];
  if (p.dt_softplus) dt = dt <= 20.0f ? log1pf(expf(dt)) : dt;
  if (p.dt_clamp) dt = fminf(fmaxf(dt, p.dt_lo), p.dt_hi);
  const float dA = expf(dt * p.A[h]);
  float dt_x[kRowsPerWarp], y[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    dt_x[r] = p0 + r < p.head_dim ? dt * to_float(x[p0 + r]) : 0.0f;
    y[r] = 0.0f;
  }
  for (int n = 4 * lane; n < p.d_state; n += 128) {
    float4 s[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      if (p0 + r < p.head_dim)
        s[r] = __ldcs(reinterpret_cast<const float4*>(state + (p0 + r) * int64_t(p.d_state) + n));
    }
    const float4 Bn = load4(B + n), Cn = load4(C + n);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      if (p0 + r >= p.head_dim) continue;
      float4 v = s[r];
      v.x = v.x * dA + dt_x[r] * Bn.x, v.y = v.y * dA + dt_x[r] * Bn.y;
      v.z = v.z * dA + dt_x[r] * Bn.z, v.w = v.w * dA + dt_x[r] * Bn.w;
      __stcs(reinterpret_cast<float4*>(state + (p0 + r) * int64_t(p.d_state) + n), v);
      y[r] += Cn.x * v.x + Cn.y * v.y + Cn.z * v.z + Cn.w * v.w;
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) y[r] += __shfl_xor_sync(0xffffffffu, y[r], off);
  }
  if (lane < kRowsPerWarp && p0 + lane < p.head_dim) {
    float out = 0.0f;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) out = lane == r ? y[r] : out;
    if (p.D) out += p.D[h] * to_float(x[p0 + lane]);
    from_float(out, static_cast<T*>(p.y) + b * p.y_batch_stride + h * p.y_head_stride + p0 + lane);
  }
}

bool aligned(const void* ptr, int bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

}  // namespace

void ssd_step(const SsdStepParams& p, cudaStream_t stream) {
  if (p.batch < 0 || p.n_heads <= 0 || p.head_dim <= 0 || p.n_groups <= 0 || p.n_heads % p.n_groups != 0 ||
      p.d_state <= 0 || p.d_state % 4 != 0) {
    throw_error(ErrorCode::shape, "ssd_step: batch ", p.batch, ", n_heads ", p.n_heads, ", head_dim ",
                p.head_dim, ", n_groups ", p.n_groups, ", d_state ", p.d_state,
                " (n_heads a multiple of n_groups, d_state a multiple of 4)");
  }
  if (!p.x || !p.dt || !p.A || !p.B || !p.C || !p.state || !p.y) {
    throw_error(ErrorCode::invalid_argument, "ssd_step: x, dt, A, B, C, state and y are required");
  }
  // B and C rows are read 4 elements at a time, the state rows as float4.
  const int vec_bytes = p.dtype == StepDType::bf16 ? 8 : 16;
  const bool ok = aligned(p.B, vec_bytes) && aligned(p.C, vec_bytes) && aligned(p.state, 16) &&
                  p.B_batch_stride % 4 == 0 && p.B_group_stride % 4 == 0 && p.C_batch_stride % 4 == 0 &&
                  p.C_group_stride % 4 == 0 && p.state_batch_stride % 4 == 0 && p.state_head_stride % 4 == 0;
  if (!ok)
    throw_error(ErrorCode::invalid_argument, "ssd_step: B, C and state rows must be aligned to 4 elements");
  if (p.batch == 0) return;
  const dim3 grid((p.head_dim + kWarps * kRowsPerWarp - 1) / (kWarps * kRowsPerWarp), p.n_heads, p.batch);
  if (p.dtype == StepDType::bf16) {
    ssd_step_kernel<__nv_bfloat16><<<grid, 32 * kWarps, 0, stream>>>(p);
  } else {
    ssd_step_kernel<float><<<grid, 32 * kWarps, 0, stream>>>(p);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace mamba::ops::cuda
