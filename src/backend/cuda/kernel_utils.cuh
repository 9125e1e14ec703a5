// Device-side helpers shared by the CUDA op kernels: the reference's activations (SPEC §0, same
// threshold and formulas as ops/elementwise/activations.h, full-precision expf/log1pf), warp and
// block reductions. Kernels are compiled without fast-math so CPU and GPU agree to rounding.
#pragma once
#include <cuda_runtime.h>

namespace mamba::cuda {

__device__ __forceinline__ float sigmoid_f(float v) {
  return 1.0f / (1.0f + expf(-v));
}
__device__ __forceinline__ float silu_f(float v) {
  return v / (1.0f + expf(-v));
}
__device__ __forceinline__ float softplus_f(float v) {
  return v <= 20.0f ? log1pf(expf(v)) : v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory; the call contains __syncthreads (all threads call).
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < n_warps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < n_warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

// Programmatic dependent launch (sm_90+, launch_dependent below): a kernel so launched may start
// while the kernel before it on the stream still runs. Before grid_dependency_wait() it may only
// touch memory no running kernel writes — in practice, prefetch weights or its own state into L2
// (L2 is coherent, so a prefetch is never stale); after it, everything earlier on the stream is
// complete and visible. allow_dependents() lets the next such kernel start (placed after the wait,
// so at most two kernels overlap). Both are no-ops before sm_90.
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Prefetches [p, p + bytes) into L2, the block's threads striding over 128-byte lines.
__device__ __forceinline__ void prefetch_l2(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = int64_t(threadIdx.x) * 128; off < bytes; off += int64_t(blockDim.x) * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
}

// Grid-stride loop bound for 1-D elementwise kernels.
#define MAMBA_GRID_STRIDE_LOOP(i, n)                                        \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

}  // namespace mamba::cuda
