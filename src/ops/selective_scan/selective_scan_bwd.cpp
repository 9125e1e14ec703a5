// Front of the selective scan's backward: checks, packs the sizes (selective_scan_params.h) and
// runs the CPU reverse-time scan (selective_scan_bwd_cpu.cpp) or the CUDA one through the kernel
// table.
#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/selective_scan/selective_scan.h"
#include "ops/selective_scan/selective_scan_params.h"

namespace mamba::ops {

SelectiveScanGrads selective_scan_bwd(Exec& exec, const SelectiveScanArgs& a, const Tensor& dy_in) {
  OpScope op_scope(exec, "selective_scan_bwd", a.u.device());
  if (a.u.device() == Device::cuda) return cuda_kernels().selective_scan.bwd(a, dy_in);
  MAMBA_CHECK(a.u.dim() == 3 && a.A.dim() == 2,
              "selective_scan_bwd: u " << shape_str(a.u.shape()) << " must be [batch, seq_len, d_inner], A "
                                       << shape_str(a.A.shape()) << " [d_inner, d_state]");
  const SelectiveScanParams p{a.u.size(0), a.u.size(1), a.u.size(2), a.A.size(1)};
  MAMBA_CHECK(a.u.is_contiguous() && a.delta.is_contiguous() && a.delta.shape() == a.u.shape(),
              "selective_scan_bwd: u " << shape_str(a.u.shape()) << " and delta "
                                       << shape_str(a.delta.shape()) << " must be contiguous, of one shape");
  MAMBA_CHECK(
      a.B.stride(2) == 1 && a.C.stride(2) == 1 && a.B.size(2) == p.d_state && a.C.size(2) == p.d_state,
      "selective_scan_bwd: B " << shape_str(a.B.shape()) << " and C " << shape_str(a.C.shape())
                               << " must be [batch, seq_len, d_state], last dim contiguous, A "
                               << shape_str(a.A.shape()));
  MAMBA_CHECK(!a.z.defined() || a.z.stride(2) == 1,
              "selective_scan_bwd: z " << shape_str(a.z.shape()) << " needs a contiguous last dim");
  const Tensor dy = dy_in.contiguous();
  MAMBA_CHECK(dy.shape() == a.u.shape(), "selective_scan_bwd: dy " << shape_str(dy.shape()) << " must be u's "
                                                                   << shape_str(a.u.shape()));
  return cpu::selective_scan_bwd(p, a, dy);
}

}  // namespace mamba::ops
