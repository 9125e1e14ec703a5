// CUDA entry points of the norm ops (norm_cuda.cu), called by norm.cpp for CUDA tensors.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

Tensor layer_norm_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
Tensor rms_norm_gated_cuda(const Tensor& x, const Tensor& z, const Tensor& weight, int64_t group_size,
                           bool norm_before_gate, float eps);

}  // namespace mamba::ops
