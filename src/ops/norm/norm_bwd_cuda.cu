// Backward of the normalizations on CUDA, one block per (row, group) like the forward: the
// block re-reads its values for each pass (sum of squares, Σ dn·n, output) and reduces in f32.
// Each block also writes its per-element weight-gradient products into a [rows, n] buffer whose
// column sums (fixed order, deterministic) are added to dweight / dbias. The gated RMSNorm of
// groups of at most 256 channels takes a warp per group (norm_rows.cuh), values in registers, the
// block kernel's sums in its order.
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "backend/cuda/reduce.h"
#include "core/error.h"
#include "ops/norm/norm.h"
#include "ops/norm/norm_rows.cuh"

namespace mamba::ops {

namespace {

using mamba::cuda::silu_f;

constexpr int kThreads = 256;

__device__ __forceinline__ float silu_grad_f(float v) {
  const float s = mamba::cuda::sigmoid_f(v);
  return s * (1.0f + v * (1.0f - s));
}

// out[c] += Σ_r m[r, c]; m: [rows, cols] contiguous.
void add_column_sums(const float* m, int64_t rows, int64_t cols, float* out) {
  if (rows == 0 || cols == 0) return;
  // Two-stage (per-chunk partials, then a fixed-order sum): a few blocks looping over every token
  // are latency-bound when d_model is small and the batch long (training of small models).
  mamba::cuda::column_sum_add(m, rows, cols, cols, out, mamba::cuda::stream());
}

// Gated, grouped RMSNorm backward (same formulas as norm_bwd.cpp). v = x·silu(z) when gating
// first, else x; nv = v·rstd; dnw = dy (·silu(z) when gating after the norm);
// dv = rstd·(dnw·w − nv·mean(dnw·w·nv)). prod = dnw·nv (summed into dweight).
__global__ void rms_norm_gated_bwd_kernel(const float* dy, const float* x, const float* z,
                                          const float* weight, float* dx, float* dz, float* prod, int64_t n,
                                          int64_t group_size, bool norm_before_gate, float eps) {
  __shared__ float scratch[32];
  const int64_t n_groups = n / group_size;
  const int64_t off = blockIdx.x * group_size, w_off = (blockIdx.x % n_groups) * group_size;
  const bool gate_first = z != nullptr && !norm_before_gate, gate_after = z != nullptr && norm_before_gate;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < group_size; i += blockDim.x) {
    const float v = gate_first ? x[off + i] * silu_f(z[off + i]) : x[off + i];
    ss += v * v;
  }
  const float rstd = 1.0f / sqrtf(mamba::cuda::block_sum(ss, scratch) / static_cast<float>(group_size) + eps);
  float dot = 0.0f;
  for (int64_t i = threadIdx.x; i < group_size; i += blockDim.x) {
    const float v = gate_first ? x[off + i] * silu_f(z[off + i]) : x[off + i];
    const float nv = v * rstd, w = weight[w_off + i];
    float dnw = dy[off + i];
    if (gate_after) {
      dz[off + i] = dnw * nv * w * silu_grad_f(z[off + i]);
      dnw *= silu_f(z[off + i]);
    }
    prod[off + i] = dnw * nv;
    dot += dnw * w * nv;
  }
  const float mean_dn_n = mamba::cuda::block_sum(dot, scratch) / static_cast<float>(group_size);
  for (int64_t i = threadIdx.x; i < group_size; i += blockDim.x) {
    const float v = gate_first ? x[off + i] * silu_f(z[off + i]) : x[off + i];
    const float nv = v * rstd;
    const float dnw = gate_after ? dy[off + i] * silu_f(z[off + i]) : dy[off + i];
    const float dv = rstd * (dnw * weight[w_off + i] - nv * mean_dn_n);
    if (gate_first) {
      dx[off + i] = dv * silu_f(z[off + i]);
      dz[off + i] = dv * x[off + i] * silu_grad_f(z[off + i]);
    } else {
      dx[off + i] = dv;
    }
  }
}

// The same for groups of at most kShortRow channels: a warp per (row, group), kRowWarps per block.
__global__ void __launch_bounds__(32 * kRowWarps)
    rms_norm_gated_bwd_rows_kernel(const float* dy, const float* x, const float* z, const float* weight,
                                   float* dx, float* dz, float* prod, int64_t n, int64_t group_size,
                                   int64_t n_items, bool norm_before_gate, float eps) {
  const RowItem r = row_item(n, group_size);
  if (r.item >= n_items) return;  // whole warps leave
  const int lane = r.lane, chunks = r.chunks;
  const int64_t off = r.off, w_off = r.w_off;
  const bool gate_first = z != nullptr && !norm_before_gate, gate_after = z != nullptr && norm_before_gate;
  float v[kRowChunks], zv[kRowChunks], part[kRowChunks];
#pragma unroll
  for (int k = 0; k < kRowChunks; ++k) {
    const int64_t i = lane + 32 * k;
    const bool in = i < group_size;
    zv[k] = in && z != nullptr ? z[off + i] : 0.0f;
    v[k] = in ? (gate_first ? x[off + i] * silu_f(zv[k]) : x[off + i]) : 0.0f;
    part[k] = v[k] * v[k];
  }
  const float rstd = 1.0f / sqrtf(row_sum(part, chunks) / static_cast<float>(group_size) + eps);
  float dnw[kRowChunks];
#pragma unroll
  for (int k = 0; k < kRowChunks; ++k) {
    const int64_t i = lane + 32 * k;
    part[k] = 0.0f;
    dnw[k] = 0.0f;
    if (i < group_size) {
      const float nv = v[k] * rstd, w = weight[w_off + i];
      dnw[k] = dy[off + i];
      if (gate_after) {
        dz[off + i] = dnw[k] * nv * w * silu_grad_f(zv[k]);
        dnw[k] *= silu_f(zv[k]);
      }
      prod[off + i] = dnw[k] * nv;
      part[k] = dnw[k] * w * nv;
    }
  }
  const float mean_dn_n = row_sum(part, chunks) / static_cast<float>(group_size);
#pragma unroll
  for (int k = 0; k < kRowChunks; ++k) {
    const int64_t i = lane + 32 * k;
    if (i >= group_size) continue;
    const float nv = v[k] * rstd;
    const float dv = rstd * (dnw[k] * weight[w_off + i] - nv * mean_dn_n);
    if (gate_first) {
      dx[off + i] = dv * silu_f(zv[k]);
      dz[off + i] = dv * x[off + i] * silu_grad_f(zv[k]);
    } else {
      dx[off + i] = dv;
    }
  }
}

// LayerNorm backward per row: dx = rstd·(dy·w − mean(dy·w) − xhat·mean(dy·w·xhat)); prod = dy·xhat.
__global__ void layer_norm_bwd_kernel(const float* dy, const float* x, const float* weight, float* dx,
                                      float* prod, int64_t n, float eps) {
  __shared__ float scratch[32];
  const int64_t off = blockIdx.x * n;
  const float *xr = x + off, *dyr = dy + off;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i];
  const float mean = mamba::cuda::block_sum(sum, scratch) / static_cast<float>(n);
  float var = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) var += (xr[i] - mean) * (xr[i] - mean);
  const float rstd = 1.0f / sqrtf(mamba::cuda::block_sum(var, scratch) / static_cast<float>(n) + eps);
  float s_dn = 0.0f, s_dn_n = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float xhat = (xr[i] - mean) * rstd, dn = dyr[i] * weight[i];
    prod[off + i] = dyr[i] * xhat;
    s_dn += dn;
    s_dn_n += dn * xhat;
  }
  const float mean_dn = mamba::cuda::block_sum(s_dn, scratch) / static_cast<float>(n);
  const float mean_dn_n = mamba::cuda::block_sum(s_dn_n, scratch) / static_cast<float>(n);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float xhat = (xr[i] - mean) * rstd;
    dx[off + i] = rstd * (dyr[i] * weight[i] - mean_dn - xhat * mean_dn_n);
  }
}

void check_f32_cuda(const Tensor& t, const char* name) {
  mamba::cuda::check_cuda_tensor(t, name);
  MAMBA_CHECK(t.dtype() == DType::f32, name << ": expected f32, got " << dtype_name(t.dtype()));
}

}  // namespace

namespace {

Tensor rms_norm_gated_bwd_impl(const Tensor& dy_in, const Tensor& x_in, const Tensor& z_in,
                               const Tensor& weight, int64_t group_size, bool norm_before_gate, float eps,
                               Tensor& dweight, Tensor& dz, bool short_rows) {
  check_f32_cuda(dy_in, "rms_norm_bwd: dy");
  check_f32_cuda(x_in, "rms_norm_bwd: x");
  check_f32_cuda(weight, "rms_norm_bwd: weight");
  check_f32_cuda(dweight, "rms_norm_bwd: dweight");
  const Tensor x = x_in.contiguous(), dy = dy_in.contiguous();
  const Tensor z = z_in.defined() ? z_in.contiguous() : Tensor();
  if (z.defined()) check_f32_cuda(z, "rms_norm_bwd: z");
  const int64_t n = x.size(-1), rows = x.numel() / n;
  MAMBA_CHECK(weight.numel() == n && group_size > 0 && n % group_size == 0 && dy.shape() == x.shape());
  MAMBA_CHECK(!z.defined() || z.shape() == x.shape());
  MAMBA_CHECK(dweight.numel() == n && dweight.is_contiguous());
  Tensor dx = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  if (z.defined()) dz = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  const int64_t blocks = rows * (n / group_size);
  if (blocks == 0) return dx;
  Tensor prod = Tensor::empty({rows, n}, DType::f32, Device::cuda);
  const float* zp = z.defined() ? z.f32() : nullptr;
  float* dzp = z.defined() ? dz.f32() : nullptr;
  if (short_rows && group_size <= kShortRow)
    rms_norm_gated_bwd_rows_kernel<<<row_blocks(blocks), 32 * kRowWarps, 0, mamba::cuda::stream()>>>(
        dy.f32(), x.f32(), zp, weight.f32(), dx.f32(), dzp, prod.f32(), n, group_size, blocks,
        norm_before_gate, eps);
  else
    rms_norm_gated_bwd_kernel<<<static_cast<unsigned int>(blocks), kThreads, 0, mamba::cuda::stream()>>>(
        dy.f32(), x.f32(), zp, weight.f32(), dx.f32(), dzp, prod.f32(), n, group_size, norm_before_gate, eps);
  CUDA_CHECK_LAUNCH();
  add_column_sums(prod.f32(), rows, n, dweight.f32());
  return dx;
}

}  // namespace

Tensor rms_norm_gated_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& z, const Tensor& weight,
                               int64_t group_size, bool norm_before_gate, float eps, Tensor& dweight,
                               Tensor& dz) {
  return rms_norm_gated_bwd_impl(dy, x, z, weight, group_size, norm_before_gate, eps, dweight, dz, true);
}

Tensor rms_norm_gated_bwd_per_block_cuda(const Tensor& dy, const Tensor& x, const Tensor& z,
                                         const Tensor& weight, int64_t group_size, bool norm_before_gate,
                                         float eps, Tensor& dweight, Tensor& dz) {
  return rms_norm_gated_bwd_impl(dy, x, z, weight, group_size, norm_before_gate, eps, dweight, dz, false);
}

Tensor layer_norm_bwd_cuda(const Tensor& dy_in, const Tensor& x_in, const Tensor& weight, float eps,
                           Tensor& dweight, Tensor& dbias) {
  check_f32_cuda(dy_in, "layer_norm_bwd: dy");
  check_f32_cuda(x_in, "layer_norm_bwd: x");
  check_f32_cuda(weight, "layer_norm_bwd: weight");
  check_f32_cuda(dweight, "layer_norm_bwd: dweight");
  const Tensor x = x_in.contiguous(), dy = dy_in.contiguous();
  const int64_t n = x.size(-1), rows = x.numel() / n;
  MAMBA_CHECK(dy.shape() == x.shape() && weight.numel() == n && dweight.numel() == n &&
              dweight.is_contiguous());
  if (dbias.defined()) {
    check_f32_cuda(dbias, "layer_norm_bwd: dbias");
    MAMBA_CHECK(dbias.numel() == n && dbias.is_contiguous());
  }
  Tensor dx = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  if (rows == 0) return dx;
  Tensor prod = Tensor::empty({rows, n}, DType::f32, Device::cuda);
  layer_norm_bwd_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, mamba::cuda::stream()>>>(
      dy.f32(), x.f32(), weight.f32(), dx.f32(), prod.f32(), n, eps);
  CUDA_CHECK_LAUNCH();
  add_column_sums(prod.f32(), rows, n, dweight.f32());
  if (dbias.defined()) add_column_sums(dy.f32(), rows, n, dbias.f32());
  return dx;
}

}  // namespace mamba::ops
