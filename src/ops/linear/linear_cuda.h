// CUDA entry points of the linear op (linear_cuda.cu), called by linear.cpp for CUDA tensors.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

Tensor linear_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias);
void linear_into_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y);
// Backward (linear_bwd_cuda.cu), same contract as linear_bwd.
Tensor linear_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, Tensor& dweight,
                       Tensor& dbias);

}  // namespace mamba::ops
