// Front of Mamba-3's gates (prepare, combine): picks the scan's operand precision, checks every
// tensor once, packs the sizes (mamba3_gates_params.h) and runs the CPU kernels
// (mamba3_gates_cpu.cpp) or the CUDA ones through the kernel table.
#include "ops/mamba3_gates/mamba3_gates.h"

#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/mamba3_gates/mamba3_gates_params.h"

namespace mamba::ops {

Mamba3PrepareSizes mamba3_prepare_sizes(const char* op, const Tensor& proj, const Mamba3Gates& g) {
  MAMBA_CHECK(
      proj.dim() == 3 && proj.is_contiguous(),
      op << ": proj " << shape_str(proj.shape()) << " must be contiguous [batch, seq_len, d_in_proj]");
  const Mamba3Layout cols = g.layout();
  MAMBA_CHECK(proj.size(2) == cols.width, op << ": proj " << shape_str(proj.shape()) << " has "
                                             << proj.size(2) << " columns, the gates' layout " << cols.width);
  MAMBA_CHECK(g.n_groups > 0 && g.n_heads % g.n_groups == 0,
              op << ": n_groups " << g.n_groups << " must divide n_heads " << g.n_heads);
  return {proj.size(0),
          proj.size(1),
          g.n_heads,
          g.head_dim,
          g.d_state,
          g.n_groups,
          g.rank,
          g.n_rope_angles,
          cols.b,
          cols.c,
          cols.dt,
          cols.width,
          g.n_heads / g.n_groups};
}

void mamba3_prepare_fwd(Exec& exec, const Tensor& proj, const Mamba3Gates& g, Tensor& angle,
                        Mamba3ScanArgs& a) {
  OpScope op_scope(exec, "mamba3_prepare_fwd", proj.device());
  MAMBA_CHECK(proj.dim() == 3, "mamba3_prepare_fwd: proj " << shape_str(proj.shape()));
  const int64_t batch = proj.size(0), seq_len = proj.size(1);
  // The scan's operands: bf16 q/k/x for CUDA inference where the tensor-core scan runs (a caller
  // may also ask for bf16 q/k itself). x as given ([batch, seq_len, d_inner] columns of proj, or
  // already [batch, seq_len, n_heads, head_dim]), converted once here when chosen.
  bool x_bf16 = false;
  if (!a.bf16_operands && proj.device() == Device::cuda && a.fast_bf16 && !a.for_backward &&
      mamba3_scan_fast_bf16_applies(seq_len, g.rank, a.mimo_x.defined(), g.head_dim, g.d_state))
    a.bf16_operands = x_bf16 = true;
  if (a.x.defined())
    a.x = (x_bf16 ? a.x.to(DType::bf16) : a.x.contiguous()).view({batch, seq_len, g.n_heads, g.head_dim});
  if (proj.device() == Device::cuda) return cuda_kernels().mamba3_gates.prepare_fwd(proj, g, angle, a);
  const Mamba3PrepareSizes p = mamba3_prepare_sizes("mamba3_prepare_fwd", proj, g);
  MAMBA_CHECK(angle.shape() == (Shape{p.batch, p.H, p.S}), "mamba3_prepare_fwd: angle "
                                                               << shape_str(angle.shape())
                                                               << " must be [batch, n_heads, n_rope_angles]"
                                                               << " for proj " << shape_str(proj.shape()));
  cpu::mamba3_prepare_fwd(p, proj, g, angle, a);
}

Tensor mamba3_combine_fwd(Exec& exec, const Tensor& y, const Tensor& z, const Tensor& norm_weight,
                          const Tensor& mimo_z, const Tensor& mimo_o) {
  OpScope op_scope(exec, "mamba3_combine_fwd", y.device());
  if (y.device() == Device::cuda)
    return cuda_kernels().mamba3_gates.combine_fwd(y, z, norm_weight, mimo_z, mimo_o);
  MAMBA_CHECK(y.is_contiguous() && y.dim() == 5 && z.dim() == 3 && z.stride(2) == 1,
              "mamba3_combine_fwd: y " << shape_str(y.shape())
                                       << " must be contiguous [batch, seq_len, rank, n_heads, head_dim], z "
                                       << shape_str(z.shape()) << " [batch, seq_len, n_heads·head_dim]");
  const Mamba3CombineDims d{
      y.size(0), y.size(1), y.size(2), y.size(3), y.size(4), mimo_o.defined(), norm_weight.defined()};
  return cpu::mamba3_combine_fwd(d, y, z, norm_weight, mimo_z, mimo_o);
}

}  // namespace mamba::ops
