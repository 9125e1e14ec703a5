// Normalizations on CUDA: one block per (row, group), f32 sums reduced over the block; the
// values are re-read for the output pass rather than held (rows are at most a few thousand wide).
// The gated RMSNorm of groups of at most 256 channels takes a warp per group instead (a block of
// 256 threads for a row of 64 left three quarters of them idle), with the block kernel's sums in
// the same order (norm_rows.cuh), so the same bits.
#include <algorithm>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/norm/norm.h"
#include "ops/norm/norm_rows.cuh"

namespace mamba::ops {

namespace {

constexpr int kThreads = 256;

// y = norm(x·silu(z))·w or norm(x)·w·silu(z) per group of `group_size` channels (SPEC §2.5).
// x, z, y: [rows, n] contiguous; weight: [n]; z may be null. Block = one (row, group). With
// kCached > 0 (group_size <= kCached·blockDim.x) each thread keeps its gated values and gates in
// registers between the sum and the scaling instead of loading x and z and computing silu twice:
// the same arithmetic in the same order (the same bits), about half the latency (in decode one
// block does a whole row, the longest kernel of a Mamba-2 layer's step).
// x at `at`, times the gate first when gate_first; the gate silu(z) (1 without z).
__device__ __forceinline__ void load_gated(const float* x, const float* z, int64_t at, bool gate_first,
                                           float& v, float& gate) {
  v = x[at];
  if (z != nullptr) gate = mamba::cuda::silu_f(z[at]);
  if (gate_first) v *= gate;
}

// The output of a gated value: v·rstd·w, times the gate when gating after the norm.
__device__ __forceinline__ float gated_out(float v, float gate, float rstd, float w, bool gate_after) {
  float out = v * rstd * w;
  if (gate_after) out *= gate;
  return out;
}

template <int kCached>
__global__ void rms_norm_gated_kernel(const float* x, const float* z, const float* weight, float* y,
                                      int64_t n, int64_t group_size, bool norm_before_gate, float eps) {
  __shared__ float scratch[32];
  const int64_t n_groups = n / group_size;
  const int64_t off = blockIdx.x * group_size;  // (row·n_groups + group)·group_size
  const int64_t w_off = (blockIdx.x % n_groups) * group_size;
  const bool gate_first = z != nullptr && !norm_before_gate, gate_after = z != nullptr && norm_before_gate;
  float ss = 0.0f;
  if constexpr (kCached > 0) {
    float v[kCached], gate[kCached];
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      v[k] = 0.0f;
      gate[k] = 1.0f;
      if (i < group_size) {
        load_gated(x, z, off + i, gate_first, v[k], gate[k]);
        ss += v[k] * v[k];
      }
    }
    ss = mamba::cuda::block_sum(ss, scratch);
    const float rstd = 1.0f / sqrtf(ss / static_cast<float>(group_size) + eps);
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (i < group_size) y[off + i] = gated_out(v[k], gate[k], rstd, weight[w_off + i], gate_after);
    }
  } else {
    for (int64_t i = threadIdx.x; i < group_size; i += blockDim.x) {
      float v = x[off + i];
      if (gate_first) v *= mamba::cuda::silu_f(z[off + i]);
      ss += v * v;
    }
    ss = mamba::cuda::block_sum(ss, scratch);
    const float rstd = 1.0f / sqrtf(ss / static_cast<float>(group_size) + eps);
    for (int64_t i = threadIdx.x; i < group_size; i += blockDim.x) {
      float v = x[off + i];
      if (gate_first) v *= mamba::cuda::silu_f(z[off + i]);
      v = v * rstd * weight[w_off + i];
      if (gate_after) v *= mamba::cuda::silu_f(z[off + i]);
      y[off + i] = v;
    }
  }
}

// The same for groups of at most kShortRow channels: a warp per (row, group), kRowWarps per block,
// lane l holding channels l, l + 32, ... and their gates in registers.
__global__ void __launch_bounds__(32 * kRowWarps)
    rms_norm_gated_rows_kernel(const float* x, const float* z, const float* weight, float* y, int64_t n,
                               int64_t group_size, int64_t n_items, bool norm_before_gate, float eps) {
  const RowItem r = row_item(n, group_size);
  if (r.item >= n_items) return;  // whole warps leave
  const bool gate_first = z != nullptr && !norm_before_gate, gate_after = z != nullptr && norm_before_gate;
  float v[kRowChunks], gate[kRowChunks], sq[kRowChunks];
#pragma unroll
  for (int k = 0; k < kRowChunks; ++k) {
    const int64_t i = r.lane + 32 * k;
    v[k] = 0.0f;
    gate[k] = 1.0f;
    if (i < group_size) load_gated(x, z, r.off + i, gate_first, v[k], gate[k]);
    sq[k] = v[k] * v[k];
  }
  const float rstd = 1.0f / sqrtf(row_sum(sq, r.chunks) / static_cast<float>(group_size) + eps);
#pragma unroll
  for (int k = 0; k < kRowChunks; ++k) {
    const int64_t i = r.lane + 32 * k;
    if (i < group_size) y[r.off + i] = gated_out(v[k], gate[k], rstd, weight[r.w_off + i], gate_after);
  }
}

// y = (x − mean)·rsqrt(var + eps)·w + b per row; block = one row.
__global__ void layer_norm_kernel(const float* x, const float* weight, const float* bias, float* y, int64_t n,
                                  float eps) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i];
  const float mean = mamba::cuda::block_sum(sum, scratch) / static_cast<float>(n);
  float var = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) var += (xr[i] - mean) * (xr[i] - mean);
  const float rstd = 1.0f / sqrtf(mamba::cuda::block_sum(var, scratch) / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    yr[i] = (xr[i] - mean) * rstd * weight[i] + (bias ? bias[i] : 0.0f);
}

// Decode's residual step: residual += x (x may be null), then y = RMSNorm or LayerNorm of the
// updated row; block = one row. Each thread re-reads only the elements it wrote, and the sums run
// in the order of the kernels above (same block size), so y has their bits.
template <bool kLayer>
__global__ void add_norm_kernel(float* residual, const float* x, const float* weight, const float* bias,
                                float* y, int64_t n, float eps) {
  __shared__ float scratch[32];
  float* rr = residual + blockIdx.x * n;
  const float* xr = x ? x + blockIdx.x * n : nullptr;
  float* yr = y + blockIdx.x * n;
  float sum = 0.0f;  // Σ v (LayerNorm) or Σ v² (RMSNorm)
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v = rr[i];
    if (xr) {
      v += xr[i];
      rr[i] = v;
    }
    if constexpr (kLayer)
      sum += v;
    else
      sum += v * v;
  }
  sum = mamba::cuda::block_sum(sum, scratch);
  if constexpr (kLayer) {
    const float mean = sum / static_cast<float>(n);
    float var = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) var += (rr[i] - mean) * (rr[i] - mean);
    const float rstd = 1.0f / sqrtf(mamba::cuda::block_sum(var, scratch) / static_cast<float>(n) + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
      yr[i] = (rr[i] - mean) * rstd * weight[i] + (bias ? bias[i] : 0.0f);
  } else {
    const float rstd = 1.0f / sqrtf(sum / static_cast<float>(n) + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = rr[i] * rstd * weight[i];
  }
}

}  // namespace

Tensor add_norm_cuda_(Tensor& residual, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                      bool layer) {
  mamba::cuda::check_cuda_tensor(residual, "add_norm: residual");
  mamba::cuda::check_cuda_tensor(weight, "add_norm: weight");
  const int64_t n = residual.size(-1), rows = residual.numel() / std::max<int64_t>(n, 1);
  MAMBA_CHECK(residual.is_contiguous() && residual.dtype() == DType::f32,
              "add_norm: residual " << shape_str(residual.shape()));
  MAMBA_CHECK(weight.numel() == n && (!bias.defined() || (layer && bias.numel() == n)));
  if (x.defined()) {
    mamba::cuda::check_cuda_tensor(x, "add_norm: x");
    MAMBA_CHECK(x.shape() == residual.shape() && x.is_contiguous() && x.raw() != residual.raw(),
                "add_norm: x " << shape_str(x.shape()));
  }
  Tensor y = Tensor::empty(residual.shape(), DType::f32, Device::cuda);
  if (rows == 0 || n == 0) return y;
  const float* xp = x.defined() ? x.f32() : nullptr;
  const float* bp = bias.defined() ? bias.f32() : nullptr;
  const unsigned int blocks = static_cast<unsigned int>(rows);
  if (layer)
    add_norm_kernel<true><<<blocks, kThreads, 0, mamba::cuda::stream()>>>(residual.f32(), xp, weight.f32(),
                                                                          bp, y.f32(), n, eps);
  else
    add_norm_kernel<false><<<blocks, kThreads, 0, mamba::cuda::stream()>>>(residual.f32(), xp, weight.f32(),
                                                                           bp, y.f32(), n, eps);
  CUDA_CHECK_LAUNCH();
  return y;
}

namespace {

Tensor rms_norm_gated_impl(const Tensor& x_in, const Tensor& z_in, const Tensor& weight, int64_t group_size,
                           bool norm_before_gate, float eps, bool short_rows) {
  const Tensor x = x_in.contiguous();
  const Tensor z = z_in.defined() ? z_in.contiguous() : Tensor();
  const int64_t n = x.size(-1), rows = x.numel() / n;
  mamba::cuda::check_cuda_tensor(weight, "rms_norm: weight");
  MAMBA_CHECK(weight.numel() == n && group_size > 0 && n % group_size == 0);
  MAMBA_CHECK(!z.defined() || (z.shape() == x.shape() && z.device() == Device::cuda));
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  const int64_t blocks = rows * (n / group_size);
  if (blocks == 0) return y;
  const float* zp = z.defined() ? z.f32() : nullptr;
  const unsigned int grid = static_cast<unsigned int>(blocks);
  if (short_rows && group_size <= kShortRow)
    rms_norm_gated_rows_kernel<<<row_blocks(blocks), 32 * kRowWarps, 0, mamba::cuda::stream()>>>(
        x.f32(), zp, weight.f32(), y.f32(), n, group_size, blocks, norm_before_gate, eps);
  else if (group_size <=
           8 * kThreads)  // Mamba-2's usual groups (up to 2048 channels): values kept in registers
    rms_norm_gated_kernel<8><<<grid, kThreads, 0, mamba::cuda::stream()>>>(
        x.f32(), zp, weight.f32(), y.f32(), n, group_size, norm_before_gate, eps);
  else
    rms_norm_gated_kernel<0><<<grid, kThreads, 0, mamba::cuda::stream()>>>(
        x.f32(), zp, weight.f32(), y.f32(), n, group_size, norm_before_gate, eps);
  CUDA_CHECK_LAUNCH();
  return y;
}

}  // namespace

Tensor rms_norm_gated_cuda(const Tensor& x, const Tensor& z, const Tensor& weight, int64_t group_size,
                           bool norm_before_gate, float eps) {
  return rms_norm_gated_impl(x, z, weight, group_size, norm_before_gate, eps, true);
}

Tensor rms_norm_gated_per_block_cuda(const Tensor& x, const Tensor& z, const Tensor& weight,
                                     int64_t group_size, bool norm_before_gate, float eps) {
  return rms_norm_gated_impl(x, z, weight, group_size, norm_before_gate, eps, false);
}

Tensor layer_norm_cuda(const Tensor& x_in, const Tensor& weight, const Tensor& bias, float eps) {
  const Tensor x = x_in.contiguous();
  const int64_t n = x.size(-1), rows = x.numel() / n;
  mamba::cuda::check_cuda_tensor(weight, "layer_norm: weight");
  MAMBA_CHECK(weight.numel() == n && (!bias.defined() || bias.numel() == n));
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  if (rows == 0) return y;
  layer_norm_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, mamba::cuda::stream()>>>(
      x.f32(), weight.f32(), bias.defined() ? bias.f32() : nullptr, y.f32(), n, eps);
  CUDA_CHECK_LAUNCH();
  return y;
}

}  // namespace mamba::ops
