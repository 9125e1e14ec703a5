// CUDA entry points of the linear op (linear_cuda.cu), called by linear.cpp for CUDA tensors.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

Tensor linear_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias);
void linear_into_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y);

}  // namespace mamba::ops
