// Linear on CUDA through cuBLAS: y = x·Wᵀ (+ b), fp32 accumulation (CUBLAS_COMPUTE_32F) and
// default math mode, so f32 GEMMs never use TF32. A bf16 weight takes x rounded to bf16 (the
// reference's bf16 rounding point) and still writes an f32 y. Row-strided x (column views of
// an in_proj output) is read in place through the leading dimension.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "core/error.h"
#include "ops/linear/linear_cuda.h"

namespace mamba::ops {

namespace {

// y[row, o] += bias[o]; y: [rows, out] contiguous.
__global__ void add_bias_kernel(float* y, const float* bias, int64_t rows, int64_t out) {
  MAMBA_GRID_STRIDE_LOOP(i, rows * out) {
    y[i] += bias[i % out];
  }
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::bf16:
      return CUDA_R_16BF;
    case DType::f16:
      return CUDA_R_16F;
    default:
      MAMBA_CHECK(false, "linear: unsupported dtype " << dtype_name(t));
  }
  return CUDA_R_32F;
}

// Row stride of x seen as a [rows, in] matrix with unit column stride, or 0 when its leading
// dims cannot be collapsed into one strided row index.
int64_t row_stride(const Tensor& x) {
  if (x.stride(-1) != 1) return 0;
  if (x.dim() == 1) return x.size(0);
  for (int64_t d = 0; d + 2 < x.dim(); ++d) {
    if (x.size(d) != 1 && x.stride(d) != x.stride(d + 1) * x.size(d + 1)) return 0;
  }
  return x.stride(-2);
}

void add_bias(const Tensor& bias, Tensor& y, int64_t rows, int64_t out) {
  if (!bias.defined()) return;
  mamba::cuda::check_cuda_tensor(bias, "linear: bias");
  MAMBA_CHECK(bias.numel() == out && bias.dtype() == DType::f32 && bias.is_contiguous());
  add_bias_kernel<<<mamba::cuda::grid_for(rows * out), 256, 0, mamba::cuda::stream()>>>(y.f32(), bias.f32(),
                                                                                        rows, out);
  CUDA_CHECK_LAUNCH();
}

// Decode GEMV (a few rows, bf16 weight): y[r, o] = Σ_i bf16(x[r, i])·W[o, i], fp32 accumulation —
// the cuBLAS path's rounding point, without its x conversion launch, and a bandwidth-bound read
// of W (one warp per output, 16-byte streaming loads; x, a few KB, comes from L1).
constexpr int kGemvMaxRows = 4;
constexpr int kGemvWarps = 8;

__device__ __forceinline__ float round_bf16(float v) {
  return __bfloat162float(__float2bfloat16(v));
}

template <int kRows>
__global__ void __launch_bounds__(32 * kGemvWarps)
    gemv_bf16_kernel(const float* __restrict__ x, int64_t ldx, const __nv_bfloat16* __restrict__ w,
                     float* __restrict__ y, int in, int out) {
  const int lane = threadIdx.x & 31;
  const int o = blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
  if (o >= out) return;
  const __nv_bfloat16* wr = w + int64_t(o) * in;
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
#pragma unroll 4
  for (int i = lane * 8; i < in; i += 256) {
    const uint4 raw = __ldcs(reinterpret_cast<const uint4*>(wr + i));
    const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
    float wf[8];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = __bfloat1622float2(pairs[j]);
      wf[2 * j] = f.x, wf[2 * j + 1] = f.y;
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float4 a = __ldg(reinterpret_cast<const float4*>(x + r * ldx + i));
      const float4 b = __ldg(reinterpret_cast<const float4*>(x + r * ldx + i + 4));
      const float xs[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[r] += round_bf16(xs[j]) * wf[j];
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float sum = mamba::cuda::warp_sum(acc[r]);
    if (lane == 0) y[int64_t(r) * out + o] = sum;
  }
}

// The GEMV applies to f32 x of at most kGemvMaxRows 16-byte-aligned rows and a bf16 weight whose
// rows are 16-byte multiples. MAMBACPP_CUBLAS_GEMV=1 keeps cuBLAS (timing comparisons).
bool gemv_bf16(const Tensor& x, const Tensor& weight, Tensor& y) {
  static const bool disabled = std::getenv("MAMBACPP_CUBLAS_GEMV") != nullptr;
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  const int64_t ld = row_stride(x);
  if (disabled || weight.dtype() != DType::bf16 || x.dtype() != DType::f32 || rows < 1 ||
      rows > kGemvMaxRows || in % 8 != 0 || in == 0 || (rows > 1 && (ld < in || ld % 4 != 0)) ||
      out >= (int64_t(1) << 31) || reinterpret_cast<uintptr_t>(x.raw()) % 16 != 0)
    return false;
  const float* xp = x.f32();
  const auto* wp = static_cast<const __nv_bfloat16*>(weight.raw());
  const unsigned int blocks = mamba::cuda::ceil_div(out, kGemvWarps);
  cudaStream_t s = mamba::cuda::stream();
  const int i = static_cast<int>(in), o = static_cast<int>(out);
  switch (rows) {
    case 1:
      gemv_bf16_kernel<1><<<blocks, 32 * kGemvWarps, 0, s>>>(xp, ld, wp, y.f32(), i, o);
      break;
    case 2:
      gemv_bf16_kernel<2><<<blocks, 32 * kGemvWarps, 0, s>>>(xp, ld, wp, y.f32(), i, o);
      break;
    case 3:
      gemv_bf16_kernel<3><<<blocks, 32 * kGemvWarps, 0, s>>>(xp, ld, wp, y.f32(), i, o);
      break;
    default:
      gemv_bf16_kernel<4><<<blocks, 32 * kGemvWarps, 0, s>>>(xp, ld, wp, y.f32(), i, o);
  }
  CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace

void linear_into_cuda(const Tensor& x_in, const Tensor& weight, const Tensor& bias, Tensor& y) {
  mamba::cuda::check_cuda_tensor(x_in, "linear: x");
  mamba::cuda::check_cuda_tensor(weight, "linear: weight");
  mamba::cuda::check_cuda_tensor(y, "linear: y");
  const int64_t in = weight.size(1), out = weight.size(0);
  MAMBA_CHECK(x_in.size(-1) == in,
              "linear: x " << shape_str(x_in.shape()) << " weight " << shape_str(weight.shape()));
  MAMBA_CHECK(weight.is_contiguous() && y.is_contiguous() && y.dtype() == DType::f32);
  MAMBA_CHECK(y.numel() == x_in.numel() / std::max<int64_t>(in, 1) * out,
              "linear: y " << shape_str(y.shape()));
  if (x_in.numel() > 0 && gemv_bf16(x_in, weight, y)) return add_bias(bias, y, x_in.numel() / in, out);
  // Operands of one GEMM share the weight's dtype (x is rounded to bf16 for a bf16 weight).
  Tensor x = x_in.dtype() == weight.dtype() ? x_in : x_in.to(weight.dtype());
  int64_t ld = row_stride(x);
  if (ld == 0 || ld < in) {
    x = x.contiguous();
    ld = in;
  }
  const int64_t rows = x.numel() / in;
  if (rows == 0) return;
  MAMBA_CHECK(rows < (int64_t(1) << 31) && out < (int64_t(1) << 31) && in < (int64_t(1) << 31));
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t t = cuda_type(weight.dtype());
  // Column-major view: yᵀ[out, rows] = W[in, out]ᵀ · xᵀ[in, rows].
  CUBLAS_CHECK(cublasGemmEx(mamba::cuda::cublas(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out),
                            static_cast<int>(rows), static_cast<int>(in), &alpha, weight.raw(), t,
                            static_cast<int>(in), x.raw(), t, static_cast<int>(ld), &beta, y.raw(),
                            CUDA_R_32F, static_cast<int>(out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  add_bias(bias, y, rows, out);
}

Tensor linear_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  Shape shape = x.shape();
  shape.back() = weight.size(0);
  Tensor y = Tensor::empty(shape, DType::f32, Device::cuda);
  linear_into_cuda(x, weight, bias, y);
  return y;
}

}  // namespace mamba::ops
