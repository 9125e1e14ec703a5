// Front of the normalizations: checks the shapes once, packs them (norm_params.h) and runs the CPU
// kernels (norm_cpu.cpp) or the CUDA ones through the kernel table.
#include "ops/norm/norm.h"

#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/norm/norm_params.h"

namespace mamba::ops {

Tensor rms_norm(Exec& exec, const Tensor& x_in, const Tensor& weight, float eps) {
  return rms_norm_gated(exec, x_in, Tensor(), weight, x_in.size(-1), false, eps);
}

Tensor layer_norm(Exec& exec, const Tensor& x_in, const Tensor& weight, const Tensor& bias, float eps) {
  OpScope op_scope(exec, "layer_norm", x_in.device());
  if (x_in.device() == Device::cuda) return cuda_kernels().norm.layer_norm(x_in, weight, bias, eps);
  const Tensor x = x_in.contiguous();
  const int64_t n = x.size(-1);
  const NormParams p{x.numel() / n, n, n, false, eps};
  MAMBA_CHECK(weight.numel() == n, "layer_norm: weight " << shape_str(weight.shape()) << " must be [n] for x "
                                                         << shape_str(x.shape()));
  return cpu::layer_norm(p, x, weight, bias);
}

namespace {
// residual += x in place (x may be undefined): the CPU half of the fused decode ops below.
void add_into(Tensor& residual, const Tensor& x) {
  MAMBA_CHECK(residual.is_contiguous() && residual.dtype() == DType::f32,
              "add_norm_: residual " << shape_str(residual.shape()) << " must be contiguous f32");
  if (!x.defined()) return;
  MAMBA_CHECK(x.shape() == residual.shape() && x.is_contiguous(),
              "add_norm_: x " << shape_str(x.shape()) << " must be contiguous, residual's "
                              << shape_str(residual.shape()));
  cpu::add_into(residual, x);
}
}  // namespace

Tensor add_rms_norm_(Exec& exec, Tensor& residual, const Tensor& x, const Tensor& weight, float eps) {
  OpScope op_scope(exec, "add_rms_norm_", residual.device());
  if (residual.device() == Device::cuda)
    return cuda_kernels().norm.add_norm_(residual, x, weight, Tensor(), eps, false);
  add_into(residual, x);
  return rms_norm(exec, residual, weight, eps);
}

Tensor add_layer_norm_(Exec& exec, Tensor& residual, const Tensor& x, const Tensor& weight,
                       const Tensor& bias, float eps) {
  OpScope op_scope(exec, "add_layer_norm_", residual.device());
  if (residual.device() == Device::cuda)
    return cuda_kernels().norm.add_norm_(residual, x, weight, bias, eps, true);
  add_into(residual, x);
  return layer_norm(exec, residual, weight, bias, eps);
}

Tensor rms_norm_gated(Exec& exec, const Tensor& x_in, const Tensor& z_in, const Tensor& weight,
                      int64_t group_size, bool norm_before_gate, float eps) {
  OpScope op_scope(exec, "rms_norm_gated", x_in.device());
  if (x_in.device() == Device::cuda)
    return cuda_kernels().norm.rms_norm_gated(x_in, z_in, weight, group_size, norm_before_gate, eps);
  const Tensor x = x_in.contiguous();
  const Tensor z = z_in.defined() ? z_in.contiguous() : Tensor();
  const int64_t n = x.size(-1);
  const NormParams p{x.numel() / n, n, group_size, norm_before_gate, eps};
  MAMBA_CHECK(weight.numel() == n && group_size > 0 && n % group_size == 0,
              "rms_norm_gated: weight " << shape_str(weight.shape()) << " must be [n] for x "
                                        << shape_str(x.shape()) << ", group_size " << group_size
                                        << " dividing n");
  MAMBA_CHECK(!z.defined() || z.shape() == x.shape(),
              "rms_norm_gated: z " << shape_str(z.shape()) << " must be x's " << shape_str(x.shape()));
  return cpu::rms_norm_gated(p, x, z, weight);
}

}  // namespace mamba::ops
