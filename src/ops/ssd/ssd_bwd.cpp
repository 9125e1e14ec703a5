// Front of SSD's backward: the fused tensor-core, the GEMM or the exact chunk-parallel CUDA backward
// by plan and shape, or the CPU reverse recurrence (ssd_bwd_cpu.cpp) after the shape checks.
#include <algorithm>

#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"
#include "ops/ssd/ssd.h"
#include "ops/ssd/ssd_params.h"

namespace mamba::ops {

SsdGrads ssd_bwd(Exec& exec, const SsdArgs& a, const Tensor& dy_in) {
  OpScope op_scope(exec, "ssd_bwd", a.x.device());
  if (a.dt_bias.defined())
    throw_error(ErrorCode::invalid_argument,
                "ssd_bwd: dt must be the step size Δ (softplus applied); a raw dt with dt_bias is for the "
                "forward only");
  if (a.x.device() == Device::cuda) {
    // The fused tensor-core form for a bf16 forward (fast_bf16) at its shapes, else the GEMM
    // (chunked matrix) form where it takes the shapes; the plan may pin either or the exact scan.
    const CudaKernels::Ssd& k = cuda_kernels().ssd;
    const KernelPlan::SsdBwd plan = exec.plan().ssd_bwd;
    const bool fast =
        plan == KernelPlan::SsdBwd::fast || (plan == KernelPlan::SsdBwd::automatic && a.fast_bf16);
    if (fast && k.bwd_fast_supported(a)) return k.bwd_fast(a, dy_in);
    // bf16 tensors in are read by the fused form only; the others read f32.
    if (a.x.dtype() != DType::f32)
      throw_error(
          ErrorCode::unsupported, "ssd_bwd: ", dtype_name(a.x.dtype()),
          " x/B/C/dy take the fused tensor-core backward only (head_dim 64, d_state 128, with fast_bf16 "
          "or ssd_bwd=fast); the other kernels read f32");
    if (plan != KernelPlan::SsdBwd::exact && k.bwd_gemm_supported(a)) return k.bwd_gemm(a, dy_in);
    return k.bwd_exact(a, dy_in);
  }
  for (const Tensor* t : {&a.x, &a.B, &a.C, &dy_in})
    if (t->dtype() != DType::f32)
      throw_error(ErrorCode::unsupported, "ssd_bwd (CPU): x, B, C and dy must be f32, found ",
                  dtype_name(t->dtype()));
  const Tensor dy = dy_in.contiguous();
  SsdBwdSizes z{a.x.size(0),
                a.x.size(1),
                a.x.size(2),
                a.x.size(3),
                a.B.size(2),
                a.B.size(3),
                std::max<int64_t>(1, a.chunk_size),
                false};
  MAMBA_CHECK(a.x.is_contiguous() && a.B.is_contiguous() && a.C.is_contiguous() && a.dt.is_contiguous(),
              "ssd_bwd: x, dt, B and C must be contiguous");
  MAMBA_CHECK(a.B.shape() == a.C.shape() && z.H % z.G == 0 && dy.shape() == a.x.shape(),
              "ssd_bwd: C " << shape_str(a.C.shape()) << " must be B's " << shape_str(a.B.shape())
                            << " (n_groups dividing n_heads), dy " << shape_str(dy.shape()) << " x's "
                            << shape_str(a.x.shape()));
  MAMBA_CHECK(a.dt.shape() == (Shape{z.batch, z.L, z.H}),
              "ssd_bwd: dt " << shape_str(a.dt.shape()) << " must be [batch, seq_len, n_heads] for x "
                             << shape_str(a.x.shape()));
  z.d_per_channel = a.D.numel() == z.H * z.P;
  MAMBA_CHECK(z.d_per_channel || a.D.numel() == z.H,
              "ssd_bwd: D " << shape_str(a.D.shape()) << " must be [n_heads] or [n_heads * head_dim]");
  return cpu::ssd_bwd(a, dy, z);
}

}  // namespace mamba::ops
