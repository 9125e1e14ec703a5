// Linear layer on CPU through OpenBLAS (row-major sgemm with a transposed weight).
#include "ops/linear/linear.h"

#include <cblas.h>

#include <cstdlib>

#include "core/error.h"
#include "ops/device.h"
#include "ops/elementwise/elementwise.h"
#include "ops/kernels.h"
#include "ops/norm/norm.h"
#include "ops/quant/quant_linear.h"

namespace mamba::ops {

void linear_into(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y) {
  OpScope op_scope(exec, "linear_into", x.device(), weight.size(0));
  if (x.device() == Device::cuda) return cuda_kernels().linear.into(exec.plan(), x, weight, bias, y);
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
  OpScope op_scope(exec, "linear", x.device(), weight.size(0));
  if (x.device() == Device::cuda) return cuda_kernels().linear.fwd(exec.plan(), x, weight, bias);
  Shape shape = x.shape();
  shape.back() = weight.size(0);
  Tensor y = Tensor::empty(shape);
  linear_into(exec, x.contiguous(), weight, bias, y);
  return y;
}

bool decode_gemv_applies(Exec& exec, int64_t rows, const Tensor& weight) {
  if (!exec.plan().fuse_decode) return false;
  if (weight.device() == Device::cuda) return cuda_kernels().linear.gemv_fits(exec.plan(), rows, weight);
  (void)rows;
  return false;
}

Tensor rms_norm_linear(Exec& exec, const Tensor& x, const Tensor& norm_weight, float eps,
                       const Tensor& weight) {
  OpScope op_scope(exec, "rms_norm_linear", x.device(), weight.size(0));
  Tensor y;
  if (x.device() == Device::cuda &&
      cuda_kernels().linear.rms_norm_linear(exec.plan(), x, norm_weight, eps, weight, y))
    return y;
  return linear(exec, rms_norm(exec, x, norm_weight, eps), weight);
}

void linear_add_(Exec& exec, Tensor& residual, const Tensor& x, const Tensor& weight) {
  OpScope op_scope(exec, "linear_add_", x.device(), weight.size(0));
  if (x.device() == Device::cuda && cuda_kernels().linear.linear_add_(exec.plan(), residual, x, weight))
    return;
  const Tensor y = linear(exec, x, weight);
  MAMBA_CHECK(residual.is_contiguous() && residual.shape() == y.shape(),
              "linear_add_: residual " << shape_str(residual.shape()) << " y " << shape_str(y.shape()));
  add_(exec, residual, y);
}

namespace {

// The pair fuses where the decode GEMV takes both weights (and the plan's fuse_decode is on).
bool decode_pair_fuses(Exec& exec, int64_t rows, const DecodeProjections& p) {
  return decode_gemv_applies(exec, rows, p.in_weight) && decode_gemv_applies(exec, rows, p.out_weight);
}

}  // namespace

Tensor decode_in_proj(Exec& exec, Tensor& residual, const Tensor& pending, const DecodeProjections& p) {
  if (!decode_pair_fuses(exec, residual.size(0), p))
    return linear(exec, add_rms_norm_(exec, residual, pending, p.norm_weight, p.eps), p.in_weight);
  if (pending.defined()) add_(exec, residual, pending);  // e.g. an MLP's output: the GEMV reads the sum
  return rms_norm_linear(exec, residual, p.norm_weight, p.eps, p.in_weight);
}

Tensor decode_out_proj(Exec& exec, Tensor& residual, const Tensor& o, const DecodeProjections& p) {
  if (!decode_pair_fuses(exec, o.size(0), p)) return linear(exec, o, p.out_weight);
  linear_add_(exec, residual, o, p.out_weight);
  return Tensor();
}

Tensor add_rms_norm_linear(Exec& exec, Tensor& residual, const Tensor& pending, const Tensor& norm_weight,
                           float eps, const Tensor& weight) {
  if (!pending.defined() && decode_gemv_applies(exec, residual.size(0), weight))
    return rms_norm_linear(exec, residual, norm_weight, eps, weight);
  return linear(exec, add_rms_norm_(exec, residual, pending, norm_weight, eps), weight);
}

}  // namespace mamba::ops
