// Optimizer kernels on CUDA: grid-stride element loops in double (the CPU's arithmetic; double
// sqrt and division are correctly rounded, so the AdamW update gives the CPU's bits). The sum of
// squares reduces per block in double, then sums the block partials on the host in block order
// (deterministic for a given size). The global norm (sum_squares_total) keeps every tensor's block
// partials in one workspace and finishes on the device: a block per tensor sums its partials in a
// fixed tree, then one thread sums the tensors in order; clipping reads that total on the device,
// so a training step needs no host sync for its gradient norm.
#include <vector>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/optim/optim.h"

namespace mamba::ops {

namespace {

using mamba::cuda::grid_for;
using mamba::cuda::stream;

constexpr int kThreads = 256;
constexpr int kMaxSumBlocks = 1024;

__global__ void adamw_kernel(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, AdamWScalars s_arg,
                             const AdamWScalars* __restrict__ s_dev) {
  const AdamWScalars s = s_dev ? *s_dev : s_arg;
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

// A fixed-order sum over the block in double (blockDim.x a multiple of 32); thread 0 gets it.
__device__ double block_sum_d(double v, double* scratch) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double total = 0.0;
  if (threadIdx.x == 0)
    for (int k = 0; k < (blockDim.x >> 5); ++k) total += scratch[k];
  return total;
}

// Block j: per_tensor[j] = Σ of slot row j (kMaxSumBlocks partials, zero past the tensor's blocks:
// adding +0.0 leaves each thread's sum as it was, so the result is the sum of the written ones).
__global__ void sum_partials_kernel(const double* __restrict__ partial, double* __restrict__ per_tensor) {
  __shared__ double scratch[32];
  const int64_t j = blockIdx.x;
  double acc = 0.0;
  for (int64_t k = threadIdx.x; k < kMaxSumBlocks; k += blockDim.x) acc += partial[j * kMaxSumBlocks + k];
  acc = block_sum_d(acc, scratch);
  if (threadIdx.x == 0) per_tensor[j] = acc;
}

__global__ void sum_tensors_kernel(const double* __restrict__ per_tensor, int64_t n,
                                   double* __restrict__ total) {
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) sum += per_tensor[j];
  *total = sum;
}

// The host's clip_grad_norm arithmetic (double sqrt and division are correctly rounded).
__global__ void clip_scale_kernel(float* __restrict__ x, int64_t n, const double* __restrict__ total,
                                  double max_norm) {
  const double coef = max_norm / (sqrt(*total) + 1e-6);
  if (!(coef < 1.0)) return;
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    x[i] = static_cast<float>(x[i] * coef);
  }
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, double coef) {
  MAMBA_GRID_STRIDE_LOOP(i, n) {
    x[i] = static_cast<float>(x[i] * coef);
  }
}

}  // namespace

void adamw_update_cuda(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWScalars& s,
                       const AdamWScalars* s_dev) {
  const int64_t n = param.numel();
  if (n == 0) return;
  adamw_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(param.f32(), grad.f32(), m.f32(), v.f32(), n,
                                                                 s, s_dev);
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

Tensor sum_squares_total_cuda(const std::vector<Tensor>& ts) {
  Tensor total = Tensor::zeros({1}, DType::i64, Device::cuda);  // all-zero bits: 0.0
  const int64_t n_tensors = static_cast<int64_t>(ts.size());
  if (n_tensors == 0) return total;
  // Nothing comes from the host (a training step recorded in a CUDA graph calls this): the rows of
  // partials are zeroed rather than their lengths uploaded.
  Tensor partial = Tensor::zeros({n_tensors * kMaxSumBlocks}, DType::i64, Device::cuda);  // doubles
  Tensor per_tensor = Tensor::empty({n_tensors}, DType::i64, Device::cuda);
  double* part = static_cast<double*>(partial.raw());
  for (int64_t j = 0; j < n_tensors; ++j) {
    const int64_t n = ts[j].numel();
    const unsigned int blocks = n == 0 ? 0 : std::min<unsigned int>(grid_for(n, kThreads), kMaxSumBlocks);
    if (blocks == 0) continue;
    sum_squares_kernel<<<blocks, kThreads, 0, stream()>>>(ts[j].f32(), n, part + j * kMaxSumBlocks);
    CUDA_CHECK_LAUNCH();
  }
  sum_partials_kernel<<<static_cast<unsigned int>(n_tensors), kThreads, 0, stream()>>>(
      part, static_cast<double*>(per_tensor.raw()));
  CUDA_CHECK_LAUNCH();
  sum_tensors_kernel<<<1, 1, 0, stream()>>>(static_cast<const double*>(per_tensor.raw()), n_tensors,
                                            static_cast<double*>(total.raw()));
  CUDA_CHECK_LAUNCH();
  return total;
}

void clip_scale_cuda_(Tensor& t, const Tensor& total, double max_norm) {
  const int64_t n = t.numel();
  if (n == 0) return;
  clip_scale_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
      t.f32(), n, static_cast<const double*>(total.raw()), max_norm);
  CUDA_CHECK_LAUNCH();
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
