// Front of the normalizations' backward: checks the shapes, packs them (norm_params.h) and runs the
// CPU kernels (norm_bwd_cpu.cpp) or the CUDA ones through the kernel table.
#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/norm/norm.h"
#include "ops/norm/norm_params.h"

namespace mamba::ops {

Tensor rms_norm_bwd(Exec& exec, const Tensor& dy, const Tensor& x, const Tensor& weight, float eps,
                    Tensor& dweight) {
  Tensor no_dz;
  return rms_norm_gated_bwd(exec, dy, x, Tensor(), weight, x.size(-1), false, eps, dweight, no_dz);
}

Tensor layer_norm_bwd(Exec& exec, const Tensor& dy_in, const Tensor& x_in, const Tensor& weight, float eps,
                      Tensor& dweight, Tensor& dbias) {
  OpScope op_scope(exec, "layer_norm_bwd", x_in.device());
  if (x_in.device() == Device::cuda)
    return cuda_kernels().norm.layer_norm_bwd(dy_in, x_in, weight, eps, dweight, dbias);
  const Tensor x = x_in.contiguous(), dy = dy_in.contiguous();
  const int64_t n = x.size(-1);
  const NormParams p{x.numel() / n, n, n, false, eps};
  MAMBA_CHECK(dy.shape() == x.shape() && weight.numel() == n && dweight.numel() == n,
              "layer_norm_bwd: dy " << shape_str(dy.shape()) << " must be x's " << shape_str(x.shape())
                                    << ", weight " << shape_str(weight.shape()) << " and dweight "
                                    << shape_str(dweight.shape()) << " [n]");
  return cpu::layer_norm_bwd(p, dy, x, weight, dweight, dbias);
}

Tensor rms_norm_gated_bwd(Exec& exec, const Tensor& dy_in, const Tensor& x_in, const Tensor& z_in,
                          const Tensor& weight, int64_t group_size, bool norm_before_gate, float eps,
                          Tensor& dweight, Tensor& dz) {
  OpScope op_scope(exec, "rms_norm_gated_bwd", x_in.device());
  if (x_in.device() == Device::cuda)
    return cuda_kernels().norm.rms_norm_gated_bwd(dy_in, x_in, z_in, weight, group_size, norm_before_gate,
                                                  eps, dweight, dz);
  const Tensor x = x_in.contiguous(), dy = dy_in.contiguous();
  const Tensor z = z_in.defined() ? z_in.contiguous() : Tensor();
  const int64_t n = x.size(-1);
  const NormParams p{x.numel() / n, n, group_size, norm_before_gate, eps};
  MAMBA_CHECK(weight.numel() == n && group_size > 0 && n % group_size == 0 && dy.shape() == x.shape(),
              "rms_norm_gated_bwd: dy " << shape_str(dy.shape()) << " must be x's " << shape_str(x.shape())
                                        << ", weight " << shape_str(weight.shape()) << " [n], group_size "
                                        << group_size << " dividing n");
  MAMBA_CHECK(!z.defined() || z.shape() == x.shape(),
              "rms_norm_gated_bwd: z " << shape_str(z.shape()) << " must be x's " << shape_str(x.shape()));
  return cpu::rms_norm_gated_bwd(p, dy, x, z, weight, dweight, dz);
}

}  // namespace mamba::ops
