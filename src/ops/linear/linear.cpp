// Linear layer on CPU through OpenBLAS (row-major sgemm with a transposed weight).
#include "ops/linear/linear.h"

#include <cblas.h>

#include <cstdlib>

#include "core/error.h"
#include "ops/device.h"
#include "ops/elementwise/elementwise.h"
#include "ops/norm/norm.h"
#include "ops/quant/quant_linear.h"
#if MAMBACPP_HAVE_CUDA
#include "ops/linear/linear_cuda.h"
#endif

namespace mamba::ops {

void linear_into(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y) {
#if MAMBACPP_HAVE_CUDA
  OpScope op_scope(exec, "linear_into", x.device(), weight.size(0));
  if (x.device() == Device::cuda) return linear_into_cuda(exec.plan(), x, weight, bias, y);
#endif
  if (is_quant_weight(weight.dtype())) return quant_linear_into(x, weight, bias, y);  // bf16, q8_0, ...
  MAMBA_CHECK(x.is_contiguous() && weight.is_contiguous() && y.is_contiguous());
  const int64_t in = weight.size(1), out = weight.size(0);
  MAMBA_CHECK(x.size(-1) == in,
              "linear: x " << shape_str(x.shape()) << " weight " << shape_str(weight.shape()));
  const int64_t rows = x.numel() / in;
  MAMBA_CHECK(y.numel() == rows * out);
  float* yp = y.f32();
  if (rows == 0) return;
  if (rows == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(out), static_cast<int>(in), 1.0f, weight.f32(),
                static_cast<int>(in), x.f32(), 1, 0.0f, yp, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(out),
                static_cast<int>(in), 1.0f, x.f32(), static_cast<int>(in), weight.f32(), static_cast<int>(in),
                0.0f, yp, static_cast<int>(out));
  }
  if (bias.defined()) {
    const float* bp = bias.f32();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) yp[r * out + o] += bp[o];
  }
}

Tensor linear(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias) {
#if MAMBACPP_HAVE_CUDA
  OpScope op_scope(exec, "linear", x.device(), weight.size(0));
  if (x.device() == Device::cuda) return linear_cuda(exec.plan(), x, weight, bias);
#endif
  Shape shape = x.shape();
  shape.back() = weight.size(0);
  Tensor y = Tensor::empty(shape);
  linear_into(exec, x.contiguous(), weight, bias, y);
  return y;
}

bool decode_gemv_applies(Exec& exec, int64_t rows, const Tensor& weight) {
  if (!exec.plan().fuse_decode) return false;
#if MAMBACPP_HAVE_CUDA
  if (weight.device() == Device::cuda) return decode_gemv_applies_cuda(exec.plan(), rows, weight);
#endif
  (void)rows;
  return false;
}

Tensor rms_norm_linear(Exec& exec, const Tensor& x, const Tensor& norm_weight, float eps,
                       const Tensor& weight) {
#if MAMBACPP_HAVE_CUDA
  OpScope op_scope(exec, "rms_norm_linear", x.device(), weight.size(0));
  Tensor y;
  if (x.device() == Device::cuda && rms_norm_linear_cuda(exec.plan(), x, norm_weight, eps, weight, y))
    return y;
#endif
  return linear(exec, rms_norm(exec, x, norm_weight, eps), weight);
}

void linear_add_(Exec& exec, Tensor& residual, const Tensor& x, const Tensor& weight) {
#if MAMBACPP_HAVE_CUDA
  OpScope op_scope(exec, "linear_add_", x.device(), weight.size(0));
  if (x.device() == Device::cuda && linear_add_cuda_(exec.plan(), residual, x, weight)) return;
#endif
  const Tensor y = linear(exec, x, weight);
  MAMBA_CHECK(residual.is_contiguous() && residual.shape() == y.shape(),
              "linear_add_: residual " << shape_str(residual.shape()) << " y " << shape_str(y.shape()));
  add_(exec, residual, y);
}

}  // namespace mamba::ops
