// Front of the Mamba-3 decode step: the fused CUDA kernel where it applies, else the three ops in
// sequence on either device (no CPU kernel of its own: the gates and scan fronts check and pick
// theirs).
#include "ops/mamba3_step/mamba3_step.h"

#include "core/error.h"
#include "ops/device.h"
#include "ops/kernels.h"

namespace mamba::ops {

Tensor mamba3_step_composed(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w,
                            Tensor& angle, Mamba3ScanState& state) {
  MAMBA_CHECK(proj.dim() == 2 && proj.size(1) == g.layout().width,
              "mamba3_step: proj " << shape_str(proj.shape()) << " must be [batch, d_in_proj], d_in_proj "
                                   << g.layout().width << " for the gates' layout");
  const int64_t batch = proj.size(0), H = g.n_heads, P = g.head_dim, di = H * P;
  const Tensor proj3 = proj.contiguous().view({batch, 1, proj.size(1)});
  Mamba3ScanArgs args;
  args.x = proj3.slice(-1, di, 2 * di).contiguous().view({batch, 1, H, P});
  args.D = w.D;
  args.mimo_x = w.mimo_x;
  mamba3_prepare_fwd(exec, proj3, g, angle, args);
  Tensor y = Tensor::empty({batch, 1, g.rank, H, P}, DType::f32, proj.device());
  mamba3_scan_step(exec, args, state, y);
  return mamba3_combine_fwd(exec, y, proj3.slice(-1, 0, di), w.norm_weight, w.mimo_z, w.mimo_o)
      .view({batch, di});
}

Tensor mamba3_step(Exec& exec, const Tensor& proj, const Mamba3Gates& g, const Mamba3StepParams& w,
                   Tensor& angle, Mamba3ScanState& state) {
  OpScope op_scope(exec, "mamba3_step", proj.device());
  if (proj.device() == Device::cuda) {
    Tensor o;
    if (cuda_kernels().mamba3_step.step(exec, proj, g, w, angle, state, o)) return o;
  }
  return mamba3_step_composed(exec, proj, g, w, angle, state);
}

}  // namespace mamba::ops
