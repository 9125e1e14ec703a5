// Backward of the linear layer on CUDA through cuBLAS, mirroring linear_cuda.cu: fp32
// accumulation (CUBLAS_COMPUTE_32F, default math, so no TF32), GEMM operands in the weight's
// dtype (dy and x rounded to bf16/f16 for a half weight, the forward's rounding point) and f32
// results. dx = dy·W is returned; dW += dyᵀ·x accumulates through beta = 1; db += Σ_rows dy is a
// deterministic two-stage column sum in double (backend/cuda/reduce.h). Row-strided x is read in place
// through the leading dimension.
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/kernel_utils.cuh"
#include "backend/cuda/reduce.h"
#include "core/error.h"
#include "ops/linear/linear.h"
#include "ops/linear/linear_cuda_util.cuh"

namespace mamba::ops {

namespace {

using linear_detail::cuda_type;
using linear_detail::row_stride;

}  // namespace

Tensor linear_bwd_cuda(const Tensor& dy_in, const Tensor& x_in, const Tensor& weight, Tensor& dweight,
                       Tensor& dbias) {
  mamba::cuda::check_cuda_tensor(dy_in, "linear_bwd: dy");
  mamba::cuda::check_cuda_tensor(x_in, "linear_bwd: x");
  mamba::cuda::check_cuda_tensor(weight, "linear_bwd: weight");
  mamba::cuda::check_cuda_tensor(dweight, "linear_bwd: dweight");
  const int64_t in = weight.size(1), out = weight.size(0);
  MAMBA_CHECK(x_in.size(-1) == in && dy_in.size(-1) == out && dy_in.numel() / out == x_in.numel() / in,
              "linear_bwd: x " << shape_str(x_in.shape()) << " dy " << shape_str(dy_in.shape()) << " weight "
                               << shape_str(weight.shape()));
  MAMBA_CHECK(weight.is_contiguous() && dweight.shape() == weight.shape() && dweight.is_contiguous() &&
                  dweight.dtype() == DType::f32,
              "linear_bwd: dweight must be a contiguous f32 tensor shaped like weight");
  Tensor dx = Tensor::empty(x_in.shape(), DType::f32, Device::cuda);
  const int64_t rows = x_in.numel() / in;
  if (rows == 0) return dx;
  MAMBA_CHECK(rows < (int64_t(1) << 31) && out < (int64_t(1) << 31) && in < (int64_t(1) << 31));
  const DType wt = weight.dtype();
  const cudaDataType_t t = cuda_type(wt);
  // Operands of one GEMM share the weight's dtype.
  const Tensor dy_f32 = dy_in.contiguous();
  const Tensor dy = wt == DType::f32 ? dy_f32 : dy_f32.to(wt);
  Tensor x = x_in.dtype() == wt ? x_in : x_in.to(wt);
  int64_t ldx = row_stride(x);
  if (ldx == 0 || ldx < in) {
    x = x.contiguous();
    ldx = in;
  }
  const float one = 1.0f, zero = 0.0f;
  const int m_rows = static_cast<int>(rows), n_out = static_cast<int>(out), n_in = static_cast<int>(in);
  // Column-major views: dxᵀ[in, rows] = W(col-major [in, out]) · dyᵀ[out, rows].
  CUBLAS_CHECK(cublasGemmEx(mamba::cuda::cublas(), CUBLAS_OP_N, CUBLAS_OP_N, n_in, m_rows, n_out, &one,
                            weight.raw(), t, n_in, dy.raw(), t, n_out, &zero, dx.raw(), CUDA_R_32F, n_in,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  // dWᵀ[in, out] += xᵀ[in, rows] · (dyᵀ[out, rows])ᵀ.
  CUBLAS_CHECK(cublasGemmEx(mamba::cuda::cublas(), CUBLAS_OP_N, CUBLAS_OP_T, n_in, n_out, m_rows, &one,
                            x.raw(), t, static_cast<int>(ldx), dy.raw(), t, n_out, &one, dweight.raw(),
                            CUDA_R_32F, n_in, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (dbias.defined()) {
    mamba::cuda::check_cuda_tensor(dbias, "linear_bwd: dbias");
    MAMBA_CHECK(dbias.numel() == out && dbias.is_contiguous() && dbias.dtype() == DType::f32);
    // The bias gradient sums the f32 dy (never the rounded GEMM operand).
    mamba::cuda::column_sum_add(dy_f32.f32(), rows, out, out, dbias.f32(), mamba::cuda::stream());
  }
  return dx;
}

}  // namespace mamba::ops
