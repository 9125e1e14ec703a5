// CUDA entry points of the norm ops (norm_cuda.cu), called by norm.cpp for CUDA tensors.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

Tensor layer_norm_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
Tensor rms_norm_gated_cuda(const Tensor& x, const Tensor& z, const Tensor& weight, int64_t group_size,
                           bool norm_before_gate, float eps);
// add_rms_norm_ (layer = false) / add_layer_norm_ (layer = true): one kernel per call.
Tensor add_norm_cuda_(Tensor& residual, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                      bool layer);
// Backward (norm_bwd_cuda.cu), same contracts as layer_norm_bwd / rms_norm_gated_bwd.
Tensor layer_norm_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, float eps,
                           Tensor& dweight, Tensor& dbias);
Tensor rms_norm_gated_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& z, const Tensor& weight,
                               int64_t group_size, bool norm_before_gate, float eps, Tensor& dweight,
                               Tensor& dz);

}  // namespace mamba::ops
