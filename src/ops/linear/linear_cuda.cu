// Linear on CUDA through cuBLAS: y = x·Wᵀ (+ b), fp32 accumulation (CUBLAS_COMPUTE_32F) and
// default math mode, so f32 GEMMs never use TF32. A bf16 weight takes x rounded to bf16 (the
// reference's bf16 rounding point) and still writes an f32 y. Row-strided x (column views of
// an in_proj output) is read in place through the leading dimension.
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

}  // namespace

void linear_into_cuda(const Tensor& x_in, const Tensor& weight, const Tensor& bias, Tensor& y) {
  mamba::cuda::check_cuda_tensor(x_in, "linear: x");
  mamba::cuda::check_cuda_tensor(weight, "linear: weight");
  mamba::cuda::check_cuda_tensor(y, "linear: y");
  const int64_t in = weight.size(1), out = weight.size(0);
  MAMBA_CHECK(x_in.size(-1) == in,
              "linear: x " << shape_str(x_in.shape()) << " weight " << shape_str(weight.shape()));
  MAMBA_CHECK(weight.is_contiguous() && y.is_contiguous() && y.dtype() == DType::f32);
  // Operands of one GEMM share the weight's dtype (x is rounded to bf16 for a bf16 weight).
  Tensor x = x_in.dtype() == weight.dtype() ? x_in : x_in.to(weight.dtype());
  int64_t ld = row_stride(x);
  if (ld == 0 || ld < in) {
    x = x.contiguous();
    ld = in;
  }
  const int64_t rows = x.numel() / in;
  MAMBA_CHECK(y.numel() == rows * out, "linear: y " << shape_str(y.shape()));
  if (rows == 0) return;
  MAMBA_CHECK(rows < (int64_t(1) << 31) && out < (int64_t(1) << 31) && in < (int64_t(1) << 31));
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t t = cuda_type(weight.dtype());
  // Column-major view: yᵀ[out, rows] = W[in, out]ᵀ · xᵀ[in, rows].
  CUBLAS_CHECK(cublasGemmEx(mamba::cuda::cublas(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out),
                            static_cast<int>(rows), static_cast<int>(in), &alpha, weight.raw(), t,
                            static_cast<int>(in), x.raw(), t, static_cast<int>(ld), &beta, y.raw(),
                            CUDA_R_32F, static_cast<int>(out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (bias.defined()) {
    mamba::cuda::check_cuda_tensor(bias, "linear: bias");
    MAMBA_CHECK(bias.numel() == out && bias.dtype() == DType::f32 && bias.is_contiguous());
    add_bias_kernel<<<mamba::cuda::grid_for(rows * out), 256, 0, mamba::cuda::stream()>>>(y.f32(), bias.f32(),
                                                                                          rows, out);
    CUDA_CHECK_LAUNCH();
  }
}

Tensor linear_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  Shape shape = x.shape();
  shape.back() = weight.size(0);
  Tensor y = Tensor::empty(shape, DType::f32, Device::cuda);
  linear_into_cuda(x, weight, bias, y);
  return y;
}

}  // namespace mamba::ops
