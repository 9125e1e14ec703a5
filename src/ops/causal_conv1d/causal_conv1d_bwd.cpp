// Front of the causal conv1d's backward: checks, packs the shapes (causal_conv1d_params.h) and
// runs the CPU kernel (causal_conv1d_bwd_cpu.cpp) or the CUDA one through the kernel table.
#include "core/error.h"
#include "ops/causal_conv1d/causal_conv1d.h"
#include "ops/causal_conv1d/causal_conv1d_params.h"
#include "ops/device.h"
#include "ops/kernels.h"

namespace mamba::ops {

Tensor causal_conv1d_bwd(Exec& exec, const Tensor& dy_in, const Tensor& x, const Tensor& weight,
                         const Tensor& bias, bool act, Tensor& dweight, Tensor& dbias) {
  OpScope op_scope(exec, "causal_conv1d_bwd", x.device());
  if (x.device() == Device::cuda)
    return cuda_kernels().causal_conv1d.bwd(dy_in, x, weight, bias, act, dweight, dbias);
  MAMBA_CHECK(x.dim() == 3 && x.stride(2) == 1, "x " << shape_str(x.shape()));
  const Tensor dy = dy_in.contiguous();
  MAMBA_CHECK(weight.dim() == 2,
              "causal_conv1d_bwd: weight " << shape_str(weight.shape()) << " must be [channels, width]");
  const CausalConv1dParams p{x.size(0), x.size(1), x.size(2), weight.size(1), act};
  MAMBA_CHECK(dy.shape() == (Shape{p.batch, p.seq_len, p.channels}) && weight.size(0) == p.channels,
              "causal_conv1d_bwd: dy " << shape_str(dy.shape()) << " must be x's " << shape_str(x.shape())
                                       << ", weight " << shape_str(weight.shape()) << " [channels, width]");
  MAMBA_CHECK(
      dweight.numel() == p.channels * p.width && dweight.is_contiguous(),
      "causal_conv1d_bwd: dweight " << shape_str(dweight.shape()) << " must be contiguous, weight's size");
  MAMBA_CHECK(!dbias.defined() || dbias.numel() == p.channels,
              "causal_conv1d_bwd: dbias " << shape_str(dbias.shape()) << " must be [channels]");
  return cpu::causal_conv1d_bwd(p, dy, x, weight, bias, dweight, dbias);
}

}  // namespace mamba::ops
