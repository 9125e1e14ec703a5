// Front of the causal depthwise conv1d: checks, packs the shapes (causal_conv1d_params.h) and runs
// the CPU kernels (causal_conv1d_cpu.cpp) or the CUDA ones through the kernel table.
#include "ops/causal_conv1d/causal_conv1d.h"

#include "core/error.h"
#include "ops/causal_conv1d/causal_conv1d_params.h"
#include "ops/device.h"
#include "ops/kernels.h"

namespace mamba::ops {

Tensor causal_conv1d_fwd(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state,
                         bool act) {
  OpScope op_scope(exec, "causal_conv1d_fwd", x.device());
  if (x.device() == Device::cuda) return cuda_kernels().causal_conv1d.fwd(x, weight, bias, state, act);
  MAMBA_CHECK(x.dim() == 3 && x.stride(2) == 1, "x " << shape_str(x.shape()));
  MAMBA_CHECK(weight.dim() == 2,
              "causal_conv1d_fwd: weight " << shape_str(weight.shape()) << " must be [channels, width]");
  const CausalConv1dParams p{x.size(0), x.size(1), x.size(2), weight.size(1), act};
  MAMBA_CHECK(weight.size(0) == p.channels && state.is_contiguous() &&
                  state.shape() == (Shape{p.batch, p.channels, p.width - 1}),
              "causal_conv1d_fwd: weight " << shape_str(weight.shape()) << " and a contiguous state "
                                           << shape_str(state.shape())
                                           << " [batch, channels, width - 1] for x " << shape_str(x.shape()));
  return cpu::causal_conv1d_fwd(p, x, weight, bias, state);
}

Tensor causal_conv1d_step(Exec& exec, const Tensor& x, const Tensor& weight, const Tensor& bias,
                          Tensor& state, bool act) {
  OpScope op_scope(exec, "causal_conv1d_step", x.device());
  if (x.device() == Device::cuda) return cuda_kernels().causal_conv1d.step(x, weight, bias, state, act);
  MAMBA_CHECK(x.dim() == 2 && x.stride(1) == 1 && weight.dim() == 2,
              "causal_conv1d_step: x " << shape_str(x.shape()) << " must be [batch, channels], weight "
                                       << shape_str(weight.shape()) << " [channels, width]");
  const CausalConv1dParams p{x.size(0), 1, x.size(1), weight.size(1), act};
  MAMBA_CHECK(state.shape() == (Shape{p.batch, p.channels, p.width - 1}),
              "causal_conv1d_step: state "
                  << shape_str(state.shape()) << " must be [batch, channels, width - 1]"
                  << " for x " << shape_str(x.shape()) << " and weight " << shape_str(weight.shape()));
  return cpu::causal_conv1d_step(p, x, weight, bias, state);
}

}  // namespace mamba::ops
