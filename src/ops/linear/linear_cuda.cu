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
#include "ops/linear/linear.h"
#include "ops/linear/linear_cuda_util.cuh"

namespace mamba::ops {

namespace {

// y[row, o] += bias[o]; y: [rows, out] contiguous.
__global__ void add_bias_kernel(float* y, const float* bias, int64_t rows, int64_t out) {
  MAMBA_GRID_STRIDE_LOOP(i, rows * out) {
    y[i] += bias[i % out];
  }
}

using linear_detail::cuda_type;
using linear_detail::row_stride;

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
// Two decode fusions ride on it (one kernel where there were two):
// - kNorm: x is the un-normed residual; the block computes each row's RMSNorm in a prologue
//   (256 threads in norm_cuda.cu's order, so the normed values are rms_norm's bits) and stages
//   bf16(x·rstd·w_norm) in shared memory for the main loop.
// - kAccumulate: y[r, o] += the sum (out_proj adding into the residual stream).
constexpr int kGemvMaxRows = 4;
constexpr int kGemvWarps = 8;
constexpr int kGemvThreads = 32 * kGemvWarps;
static_assert(kGemvThreads == 256, "the fused norm reduces like norm_cuda.cu's 256-thread blocks");
constexpr size_t kGemvMaxSmem = 48 * 1024;  // staged normed rows (no opt-in above the default)

struct GemvArgs {
  const float* x;            // [rows, in] at row stride ldx (kNorm: contiguous)
  int64_t ldx;               // row stride of x
  const __nv_bfloat16* w;    // [out, in]
  float* y;                  // [rows, out]
  const float* norm_weight;  // [in], kNorm only
  float eps;                 // kNorm only
  int in, out;
};

__device__ __forceinline__ float round_bf16(float v) {
  return __bfloat162float(__float2bfloat16(v));
}

// Eight consecutive bf16 as floats.
__device__ __forceinline__ void bf16x8_to_float(const uint4& raw, float* f) {
  const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 v = __bfloat1622float2(pairs[j]);
    f[2 * j] = v.x, f[2 * j + 1] = v.y;
  }
}

// Work split: kOut outputs per warp (consecutive rows of W: more loads in flight per lane, fewer
// blocks, so a large `out` fits the GPU in one wave) and kSplit warps per output group, each
// taking every kSplit-th 256-element slice of the row (more warps for a small `out`); the kSplit
// partial sums are added in a fixed order through shared memory, so results are deterministic.
template <int kRows, int kOut, int kSplit, bool kNorm, bool kAccumulate>
__global__ void __launch_bounds__(kGemvThreads) gemv_bf16_kernel(const GemvArgs a) {
  extern __shared__ __align__(16) unsigned char gemv_smem[];
  __nv_bfloat16* xs_normed = reinterpret_cast<__nv_bfloat16*>(gemv_smem);  // [kRows, in], kNorm only
  __shared__ float partial[kSplit > 1 ? kGemvWarps : 1][kRows][kOut];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % kSplit;
  const int o0 = (blockIdx.x * (kGemvWarps / kSplit) + warp / kSplit) * kOut;
  const int in = a.in;
  // Pull this warp's slices of its weight rows towards L2 (a lane per 128-byte line, 4 lines per
  // 256-element slice) while, kNorm, the block normalizes x — and, as a programmatic dependent,
  // while the kernel before still runs — then wait for x.
#pragma unroll
  for (int j = 0; j < kOut; ++j)
    if (o0 + j < a.out)
      for (int i = (part + lane / 4 * kSplit) * 256 + lane % 4 * 64; i < in; i += 8 * kSplit * 256)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(a.w + int64_t(o0 + j) * in + i));
  mamba::cuda::grid_dependency_wait();
  mamba::cuda::allow_dependents();
  if constexpr (kNorm) {
    __shared__ float scratch[32];
    for (int r = 0; r < kRows; ++r) {  // every thread takes part (block-wide sums)
      const float* xr = a.x + r * a.ldx;
      float ss = 0.0f;
      for (int64_t i = threadIdx.x; i < in; i += blockDim.x) {
        const float v = xr[i];
        ss += v * v;
      }
      ss = mamba::cuda::block_sum(ss, scratch);
      const float rstd = 1.0f / sqrtf(ss / static_cast<float>(in) + a.eps);
      for (int64_t i = threadIdx.x; i < in; i += blockDim.x)
        xs_normed[r * in + i] = __float2bfloat16(xr[i] * rstd * a.norm_weight[i]);
    }
    __syncthreads();
  }
  if (kSplit == 1 && o0 >= a.out) return;
  const __nv_bfloat16* wr[kOut];
#pragma unroll
  for (int j = 0; j < kOut; ++j) wr[j] = a.w + int64_t(o0 + j < a.out ? o0 + j : o0) * in;
  float acc[kRows][kOut];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int j = 0; j < kOut; ++j) acc[r][j] = 0.0f;
  const int end = o0 < a.out ? in : 0;  // kSplit > 1: a warp past `out` still joins the barrier
#pragma unroll 4
  for (int i = part * 256 + lane * 8; i < end; i += kSplit * 256) {
    float wf[kOut][8];
#pragma unroll
    for (int j = 0; j < kOut; ++j) bf16x8_to_float(__ldcs(reinterpret_cast<const uint4*>(wr[j] + i)), wf[j]);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float xf[8];
      if constexpr (kNorm) {
        bf16x8_to_float(*reinterpret_cast<const uint4*>(xs_normed + r * in + i), xf);
      } else {
        const float4 lo = __ldg(reinterpret_cast<const float4*>(a.x + r * a.ldx + i));
        const float4 hi = __ldg(reinterpret_cast<const float4*>(a.x + r * a.ldx + i + 4));
        const float xs[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
        for (int k = 0; k < 8; ++k) xf[k] = round_bf16(xs[k]);
      }
#pragma unroll
      for (int j = 0; j < kOut; ++j)
#pragma unroll
        for (int k = 0; k < 8; ++k) acc[r][j] += xf[k] * wf[j][k];
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int j = 0; j < kOut; ++j) {
      acc[r][j] = mamba::cuda::warp_sum(acc[r][j]);
      if (kSplit > 1 && lane == 0) partial[kSplit > 1 ? warp : 0][r][j] = acc[r][j];
    }
  if constexpr (kSplit > 1) {
    __syncthreads();
    if (part != 0) return;
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int j = 0; j < kOut; ++j) {
        acc[r][j] = partial[warp][r][j];
#pragma unroll
        for (int k = 1; k < kSplit; ++k) acc[r][j] += partial[warp + k][r][j];
      }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int j = 0; j < kOut; ++j) {
      const float sum = acc[r][j];
      if (lane == 0 && o0 + j < a.out) {
        float& out = a.y[int64_t(r) * a.out + o0 + j];
        out = kAccumulate ? out + sum : sum;
      }
    }
  }
}

// The weight side of the GEMV's conditions: bf16 [out, in] with rows of 16-byte multiples, 1-4
// rows (for the kNorm variant, `staged`: whose normed bf16 copies fit its shared memory).
bool gemv_weight_fits(const KernelPlan& plan, int64_t rows, const Tensor& weight, bool staged) {
  if (plan.decode_gemv == KernelPlan::DecodeGemv::cublas || weight.device() != Device::cuda ||
      weight.dtype() != DType::bf16 || weight.dim() != 2 || !weight.is_contiguous())
    return false;
  const int64_t in = weight.size(1), out = weight.size(0);
  return rows >= 1 && rows <= kGemvMaxRows && in > 0 && in % 8 == 0 && out < (int64_t(1) << 31) &&
         (!staged || static_cast<size_t>(rows * in) * sizeof(__nv_bfloat16) <= kGemvMaxSmem);
}

// The work split for `out` rows of `in`: 2 outputs per warp when one per warp would need more than
// one wave of blocks (8 resident 256-thread blocks per SM); else as many warps per output (4, 2)
// as still fit one wave. KernelPlan::gemv_split (outputs per warp, warps per output) overrides it
// (timing comparisons).
struct GemvSplit {
  int out_per_warp, warps_per_out;
};

GemvSplit gemv_split(KernelPlan::GemvSplit forced, int64_t out, int64_t in) {
  using S = KernelPlan::GemvSplit;
  switch (forced) {
    case S::s21:
      return {2, 1};
    case S::s12:
      return {1, 2};
    case S::s14:
      return {1, 4};
    case S::s11:
      return {1, 1};
    case S::automatic:
      break;
  }
  const int64_t resident_warps = int64_t(8) * kGemvWarps * mamba::cuda::device_info().multiprocessors;
  if (out > resident_warps) return {2, 1};
  for (int split : {4, 2})
    if (out * split <= resident_warps && in % (256 * split) == 0) return {1, split};
  return {1, 1};
}

template <int kOut, int kSplit, bool kNorm, bool kAccumulate>
void launch_gemv_rows(int64_t rows, const GemvArgs& a) {
  const unsigned int blocks = mamba::cuda::ceil_div(a.out, kGemvWarps / kSplit * kOut);
  const size_t smem = kNorm ? static_cast<size_t>(rows * a.in) * sizeof(__nv_bfloat16) : 0;
  using mamba::cuda::launch_dependent;
  switch (rows) {
    case 1:
      launch_dependent({blocks, kGemvThreads, smem}, gemv_bf16_kernel<1, kOut, kSplit, kNorm, kAccumulate>,
                       a);
      break;
    case 2:
      launch_dependent({blocks, kGemvThreads, smem}, gemv_bf16_kernel<2, kOut, kSplit, kNorm, kAccumulate>,
                       a);
      break;
    case 3:
      launch_dependent({blocks, kGemvThreads, smem}, gemv_bf16_kernel<3, kOut, kSplit, kNorm, kAccumulate>,
                       a);
      break;
    default:
      launch_dependent({blocks, kGemvThreads, smem}, gemv_bf16_kernel<4, kOut, kSplit, kNorm, kAccumulate>,
                       a);
  }
  CUDA_CHECK_LAUNCH();
}

template <bool kNorm, bool kAccumulate>
void launch_gemv(const KernelPlan& plan, int64_t rows, const GemvArgs& a) {
  const GemvSplit split = gemv_split(plan.gemv_split, a.out, a.in);
  if (split.out_per_warp == 2)
    launch_gemv_rows<2, 1, kNorm, kAccumulate>(rows, a);
  else if (split.warps_per_out == 4)
    launch_gemv_rows<1, 4, kNorm, kAccumulate>(rows, a);
  else if (split.warps_per_out == 2)
    launch_gemv_rows<1, 2, kNorm, kAccumulate>(rows, a);
  else
    launch_gemv_rows<1, 1, kNorm, kAccumulate>(rows, a);
}

// The GEMV (accumulating into y or not) where it applies: f32 x of at most kGemvMaxRows
// 16-byte-aligned rows. KernelPlan::decode_gemv = cublas keeps cuBLAS (timing comparisons).
template <bool kAccumulate>
bool gemv_bf16(const KernelPlan& plan, const Tensor& x, const Tensor& weight, Tensor& y) {
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  const int64_t ld = row_stride(x);
  if (!gemv_weight_fits(plan, rows, weight, false) || x.dtype() != DType::f32 ||
      (rows > 1 && (ld < in || ld % 4 != 0)) || reinterpret_cast<uintptr_t>(x.raw()) % 16 != 0)
    return false;
  launch_gemv<false, kAccumulate>(plan, rows,
                                  {x.f32(), ld, static_cast<const __nv_bfloat16*>(weight.raw()), y.f32(),
                                   nullptr, 0.0f, static_cast<int>(in), static_cast<int>(out)});
  return true;
}

}  // namespace

void linear_into_cuda(const KernelPlan& plan, const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                      Tensor& y) {
  mamba::cuda::check_cuda_tensor(x_in, "linear: x");
  mamba::cuda::check_cuda_tensor(weight, "linear: weight");
  mamba::cuda::check_cuda_tensor(y, "linear: y");
  const int64_t in = weight.size(1), out = weight.size(0);
  MAMBA_CHECK(x_in.size(-1) == in,
              "linear: x " << shape_str(x_in.shape()) << " weight " << shape_str(weight.shape()));
  MAMBA_CHECK(weight.is_contiguous() && y.is_contiguous() && y.dtype() == DType::f32);
  MAMBA_CHECK(y.numel() == x_in.numel() / std::max<int64_t>(in, 1) * out,
              "linear: y " << shape_str(y.shape()));
  if (x_in.numel() > 0 && gemv_bf16<false>(plan, x_in, weight, y))
    return add_bias(bias, y, x_in.numel() / in, out);
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

Tensor linear_cuda(const KernelPlan& plan, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  Shape shape = x.shape();
  shape.back() = weight.size(0);
  Tensor y = Tensor::empty(shape, DType::f32, Device::cuda);
  linear_into_cuda(plan, x, weight, bias, y);
  return y;
}

bool decode_gemv_applies_cuda(const KernelPlan& plan, int64_t rows, const Tensor& weight) {
  return gemv_weight_fits(plan, rows, weight, true);
}

bool rms_norm_linear_cuda(const KernelPlan& plan, const Tensor& x, const Tensor& norm_weight, float eps,
                          const Tensor& weight, Tensor& y) {
  mamba::cuda::check_cuda_tensor(x, "rms_norm_linear: x");
  mamba::cuda::check_cuda_tensor(norm_weight, "rms_norm_linear: norm_weight");
  const int64_t in = weight.size(1), out = weight.size(0);
  MAMBA_CHECK(x.dim() == 2 && x.size(1) == in && norm_weight.numel() == in,
              "rms_norm_linear: x " << shape_str(x.shape()) << " weight " << shape_str(weight.shape()));
  const int64_t rows = x.size(0);
  if (!gemv_weight_fits(plan, rows, weight, true) || !x.is_contiguous() || x.dtype() != DType::f32 ||
      !norm_weight.is_contiguous() || norm_weight.dtype() != DType::f32)
    return false;
  y = Tensor::empty({rows, out}, DType::f32, Device::cuda);
  launch_gemv<true, false>(plan, rows,
                           {x.f32(), in, static_cast<const __nv_bfloat16*>(weight.raw()), y.f32(),
                            norm_weight.f32(), eps, static_cast<int>(in), static_cast<int>(out)});
  return true;
}

bool linear_add_cuda_(const KernelPlan& plan, Tensor& residual, const Tensor& x, const Tensor& weight) {
  mamba::cuda::check_cuda_tensor(residual, "linear_add_: residual");
  mamba::cuda::check_cuda_tensor(x, "linear_add_: x");
  const int64_t in = weight.size(1), out = weight.size(0);
  MAMBA_CHECK(x.dim() == 2 && x.size(1) == in && residual.dim() == 2 && residual.size(0) == x.size(0) &&
                  residual.size(1) == out,
              "linear_add_: x " << shape_str(x.shape()) << " weight " << shape_str(weight.shape())
                                << " residual " << shape_str(residual.shape()));
  MAMBA_CHECK(residual.raw() != x.raw(), "linear_add_: x aliases the residual");
  if (!residual.is_contiguous() || residual.dtype() != DType::f32) return false;
  return gemv_bf16<true>(plan, x, weight, residual);
}

}  // namespace mamba::ops
