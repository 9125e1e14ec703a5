// Front of the Mamba-3 gates' backward: checks every tensor once, packs the sizes
// (mamba3_gates_params.h) and runs the CPU kernels (mamba3_gates_bwd_cpu.cpp) or the CUDA ones
// through the kernel table.
#include <utility>

#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/mamba3_gates/mamba3_gates.h"
#include "ops/mamba3_gates/mamba3_gates_params.h"

namespace mamba::ops {

void mamba3_prepare_bwd(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3ScanGrads& ds,
                        Tensor& dproj, Mamba3Gates& grads) {
  OpScope op_scope(exec, "mamba3_prepare_bwd", proj.device());
  if (proj.device() == Device::cuda)
    return cuda_kernels().mamba3_gates.prepare_bwd(proj, g, ds, dproj, grads);
  const Mamba3PrepareSizes l = mamba3_prepare_sizes("mamba3_prepare_bwd", proj, g);
  MAMBA_CHECK(dproj.is_contiguous() && dproj.shape() == proj.shape(),
              "mamba3_prepare_bwd: dproj " << shape_str(dproj.shape()) << " must be contiguous, proj's "
                                           << shape_str(proj.shape()));
  MAMBA_CHECK(ds.dk.shape() == (Shape{l.batch, l.seq_len, l.R, l.H, l.N}) && ds.dq.shape() == ds.dk.shape(),
              "mamba3_prepare_bwd: dk " << shape_str(ds.dk.shape()) << " and dq " << shape_str(ds.dq.shape())
                                        << " must be [batch, seq_len, rank, n_heads, d_state]");
  for (auto [grad, size] : {std::pair{&grads.dt_bias, l.H}, std::pair{&grads.B_bias, l.H * l.R * l.N},
                            std::pair{&grads.C_bias, l.H * l.R * l.N}, std::pair{&grads.B_norm_weight, l.N},
                            std::pair{&grads.C_norm_weight, l.N}})
    MAMBA_CHECK(grad->numel() == size, "mamba3_prepare_bwd: a gradient "
                                           << shape_str(grad->shape()) << " must hold " << size << " values");
  cpu::mamba3_prepare_bwd(l, proj, g, ds, dproj, grads);
}

Tensor mamba3_combine_bwd(Exec& exec, const Tensor& dout_in, const Tensor& y, const Tensor& z,
                          const Tensor& norm_weight, const Tensor& mimo_z, const Tensor& mimo_o, Tensor& dz,
                          Tensor& dnorm_weight, Tensor& dmimo_z, Tensor& dmimo_o) {
  OpScope op_scope(exec, "mamba3_combine_bwd", y.device());
  if (y.device() == Device::cuda)
    return cuda_kernels().mamba3_gates.combine_bwd(dout_in, y, z, norm_weight, mimo_z, mimo_o, dz,
                                                   dnorm_weight, dmimo_z, dmimo_o);
  MAMBA_CHECK(y.is_contiguous() && y.dim() == 5 && z.dim() == 3 && z.stride(2) == 1,
              "mamba3_combine_bwd: y " << shape_str(y.shape())
                                       << " must be contiguous [batch, seq_len, rank, n_heads, head_dim], z "
                                       << shape_str(z.shape()) << " [batch, seq_len, n_heads·head_dim]");
  const Tensor dout = dout_in.contiguous();
  const Mamba3CombineDims d{
      y.size(0), y.size(1), y.size(2), y.size(3), y.size(4), mimo_o.defined(), norm_weight.defined()};
  MAMBA_CHECK(dout.shape() == (Shape{d.batch, d.seq_len, d.H * d.P}),
              "mamba3_combine_bwd: dout " << shape_str(dout.shape())
                                          << " must be [batch, seq_len, n_heads·head_dim]"
                                          << " for y " << shape_str(y.shape()));
  return cpu::mamba3_combine_bwd(d, dout, y, z, norm_weight, mimo_z, mimo_o, dz, dnorm_weight, dmimo_z,
                                 dmimo_o);
}

}  // namespace mamba::ops
