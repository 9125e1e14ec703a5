// CUDA entry points of the causal conv1d op (causal_conv1d_cuda.cu), called by causal_conv1d.cpp.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

Tensor causal_conv1d_fwd_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state,
                              bool silu);
Tensor causal_conv1d_step_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& state,
                               bool silu);

}  // namespace mamba::ops
