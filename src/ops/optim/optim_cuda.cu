// Optimizer kernels on CUDA: grid-stride element loops in double (the CPU's arithmetic; double
// sqrt and division are correctly rounded, so the AdamW update gives the CPU's bits). The sum of
// squares reduces per block in double, then sums the block partials on the host in block order
// (deterministic for a given size).
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/optim/optim_cuda.h"

namespace mamba::ops {

namespace {

using mamba::cuda::grid_for;
using mamba::cuda::stream;

constexpr int kThreads = 256;
constexpr int kMaxSumBlocks = 1024;

__global__ void adamw_kernel(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, AdamWScalars s) {
  const double b1 = s.beta1, b2 = s.beta2;
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    const double gi = g[i];
    const double wi = w[i] * s.decay;
    const double mi = m[i] + (gi - m[i]) * (1.0 - b1);
    const double vi = b2 * v[i] + (1.0 - b2) * gi * gi;
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
    w[i] = static_cast<float>(wi - s.step_size * mi / (sqrt(vi) / s.bc2_sqrt + s.eps));
  }
}

__global__ void sum_squares_kernel(const float* __restrict__ x, int64_t n, double* __restrict__ partial) {
  __shared__ double scratch[32];
  double acc = 0.0;
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    const double xi = x[i];
    acc += xi * xi;
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int k = 0; k < (blockDim.x >> 5); ++k) total += scratch[k];
    partial[blockIdx.x] = total;
  }
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, double coef) {
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    x[i] = static_cast<float>(x[i] * coef);
  }
}

}  // namespace

void adamw_update_cuda(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWScalars& s) {
  const int64_t n = param.numel();
  if (n == 0) return;
  adamw_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(param.f32(), grad.f32(), m.f32(), v.f32(), n,
                                                                 s);
  CUDA_CHECK_LAUNCH();
}

double sum_squares_cuda(const Tensor& t) {
  const int64_t n = t.numel();
  if (n == 0) return 0.0;
  const unsigned int blocks = std::min<unsigned int>(grid_for(n, kThreads), kMaxSumBlocks);
  Tensor partial = Tensor::empty({static_cast<int64_t>(blocks)}, DType::i64, Device::cuda);  // doubles
  sum_squares_kernel<<<blocks, kThreads, 0, stream()>>>(t.f32(), n, static_cast<double*>(partial.raw()));
  CUDA_CHECK_LAUNCH();
  const Tensor host = partial.to(Device::cpu);  // synchronizes
  const double* p = static_cast<const double*>(host.raw());
  double sum = 0.0;
  for (unsigned int b = 0; b < blocks; ++b) sum += p[b];
  return sum;
}

void scale_cuda_(Tensor& t, double coef) {
  const int64_t n = t.numel();
  if (n == 0) return;
  scale_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(t.f32(), n, coef);
  CUDA_CHECK_LAUNCH();
}

void zero_cuda_(Tensor& t) {
  if (t.nbytes() == 0) return;
  CUDA_CHECK(cudaMemsetAsync(t.raw(), 0, t.nbytes(), stream()));
}

}  // namespace mamba::ops
