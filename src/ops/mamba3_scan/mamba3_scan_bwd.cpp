// Front of the Mamba-3 scan's backward: the fused tensor-core, the GEMM or the exact chunk-parallel
// CUDA backward by plan and shape, or the CPU reverse recurrence (mamba3_scan_bwd_cpu.cpp) after the
// shape checks.
#include <algorithm>

#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/mamba3_scan/mamba3_scan.h"
#include "ops/mamba3_scan/mamba3_scan_params.h"

namespace mamba::ops {

Mamba3ScanGrads mamba3_scan_bwd(Exec& exec, const Mamba3ScanArgs& a, const Tensor& dy_in) {
  OpScope op_scope(exec, "mamba3_scan_bwd", a.x.device());
  if (a.x.device() == Device::cuda) {
    // The fused tensor-core form for a bf16 forward (fast_bf16) at its shapes, else the GEMM form
    // where it takes the shapes (SISO); the plan may pin either or the exact scan (the path MIMO
    // always takes).
    const CudaKernels::Mamba3Scan& k = cuda_kernels().mamba3_scan;
    const KernelPlan::Mamba3Bwd plan = exec.plan().mamba3_bwd;
    const bool fast =
        plan == KernelPlan::Mamba3Bwd::fast || (plan == KernelPlan::Mamba3Bwd::automatic && a.fast_bf16);
    if (fast && k.bwd_fast_supported(a)) return k.bwd_fast(a, dy_in);
    // bf16 tensors in are read by the fused form only; the others read f32.
    if (a.x.dtype() != DType::f32)
      throw_error(ErrorCode::unsupported, "mamba3_scan_bwd: ", dtype_name(a.x.dtype()),
                  " x/q/k/dy take the fused tensor-core backward only (SISO, head_dim 64, d_state 128, with "
                  "fast_bf16 or mamba3_bwd=fast); the other kernels read f32");
    if (plan != KernelPlan::Mamba3Bwd::exact && k.bwd_gemm_supported(a)) return k.bwd_gemm(a, dy_in);
    return k.bwd_exact(a, dy_in);
  }
  for (const Tensor* t : {&a.x, &a.q, &a.k, &dy_in})
    if (t->dtype() != DType::f32)
      throw_error(ErrorCode::unsupported, "mamba3_scan_bwd (CPU): x, q, k and dy must be f32, found ",
                  dtype_name(t->dtype()));
  const Tensor dy = dy_in.contiguous();
  const Mamba3ScanBwdSizes z{a.x.size(0),
                             a.x.size(1),
                             a.q.size(2),
                             a.x.size(2),
                             a.x.size(3),
                             a.q.size(4),
                             std::max<int64_t>(1, a.chunk_size)};
  const int64_t B = z.batch, L = z.L, R = z.R, H = z.H, P = z.P, N = z.N;
  MAMBA_CHECK(a.q.shape() == (Shape{B, L, R, H, N}) && a.k.shape() == a.q.shape(),
              "mamba3_scan_bwd: q " << shape_str(a.q.shape()) << " and k " << shape_str(a.k.shape())
                                    << " must be [batch, seq_len, mimo_rank, n_heads, d_state]");
  MAMBA_CHECK(
      a.adt.shape() == (Shape{B, L, H}) && a.dt.shape() == a.adt.shape() && a.trap.shape() == a.adt.shape(),
      "mamba3_scan_bwd: adt/dt/trap must be [batch, seq_len, n_heads]");
  MAMBA_CHECK(dy.shape() == (Shape{B, L, R, H, P}), "dy " << shape_str(dy.shape()));
  MAMBA_CHECK(a.mimo_x.defined() || R == 1, "mamba3_scan_bwd: SISO (no mimo_x) needs mimo_rank 1, got " << R);
  for (const Tensor* t : {&a.x, &a.q, &a.k, &a.adt, &a.dt, &a.trap})
    MAMBA_CHECK(t->is_contiguous() && t->dtype() == DType::f32,
                "mamba3_scan_bwd: CPU tensors must be f32 and contiguous");
  return cpu::mamba3_scan_bwd(a, dy, z);
}

}  // namespace mamba::ops
