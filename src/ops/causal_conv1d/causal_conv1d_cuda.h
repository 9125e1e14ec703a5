// CUDA entry points of the causal conv1d op (causal_conv1d_cuda.cu), called by causal_conv1d.cpp.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

Tensor causal_conv1d_fwd_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state,
                              bool silu);
Tensor causal_conv1d_step_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state,
                               bool silu);
// Backward (causal_conv1d_bwd_cuda.cu), same contract as causal_conv1d_bwd.
Tensor causal_conv1d_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& bias,
                              bool silu, Tensor& dweight, Tensor& dbias);

}  // namespace mamba::ops
