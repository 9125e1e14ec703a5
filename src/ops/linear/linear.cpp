// Linear layer on CPU through OpenBLAS (row-major sgemm with a transposed weight).
#include "ops/linear/linear.h"

#include <cblas.h>

#include "core/error.h"
#if MAMBACPP_HAVE_CUDA
#include "ops/linear/linear_cuda.h"
#endif

namespace mamba::ops {

void linear_into(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y) {
#if MAMBACPP_HAVE_CUDA
  if (x.device() == Device::cuda) return linear_into_cuda(x, weight, bias, y);
#endif
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

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
#if MAMBACPP_HAVE_CUDA
  if (x.device() == Device::cuda) return linear_cuda(x, weight, bias);
#endif
  Shape shape = x.shape();
  shape.back() = weight.size(0);
  Tensor y = Tensor::empty(shape);
  linear_into(x.contiguous(), weight, bias, y);
  return y;
}

}  // namespace mamba::ops
