// Front of the selective scan: checks every tensor once, packs the sizes (selective_scan_params.h)
// and runs the CPU kernel (selective_scan_cpu.cpp) or the CUDA one through the kernel table.
#include "ops/selective_scan/selective_scan.h"

#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/selective_scan/selective_scan_params.h"

namespace mamba::ops {

Tensor selective_scan_fwd(Exec& exec, const SelectiveScanArgs& a, Tensor& state) {
  OpScope op_scope(exec, "selective_scan_fwd", a.u.device());
  if (a.u.device() == Device::cuda) return cuda_kernels().selective_scan.fwd(a, state);
  MAMBA_CHECK(a.u.dim() == 3 && a.A.dim() == 2,
              "selective_scan_fwd: u " << shape_str(a.u.shape()) << " must be [batch, seq_len, d_inner], A "
                                       << shape_str(a.A.shape()) << " [d_inner, d_state]");
  const SelectiveScanParams p{a.u.size(0), a.u.size(1), a.u.size(2), a.A.size(1)};
  MAMBA_CHECK(a.u.is_contiguous() && a.delta.is_contiguous() && a.delta.shape() == a.u.shape(),
              "selective_scan_fwd: u " << shape_str(a.u.shape()) << " and delta "
                                       << shape_str(a.delta.shape()) << " must be contiguous, of one shape");
  MAMBA_CHECK(
      a.B.stride(2) == 1 && a.C.stride(2) == 1 && a.B.size(2) == p.d_state && a.C.size(2) == p.d_state,
      "selective_scan_fwd: B " << shape_str(a.B.shape()) << " and C " << shape_str(a.C.shape())
                               << " must be [batch, seq_len, d_state], last dim contiguous, A "
                               << shape_str(a.A.shape()));
  MAMBA_CHECK(state.is_contiguous() && state.shape() == (Shape{p.batch, p.d_inner, p.d_state}),
              "selective_scan_fwd: state " << shape_str(state.shape())
                                           << " must be contiguous [batch, d_inner, d_state] for u "
                                           << shape_str(a.u.shape()) << ", A " << shape_str(a.A.shape()));
  MAMBA_CHECK(!a.z.defined() || a.z.stride(2) == 1,
              "selective_scan_fwd: z " << shape_str(a.z.shape()) << " needs a contiguous last dim");
  return cpu::selective_scan_fwd(p, a, state);
}

}  // namespace mamba::ops
