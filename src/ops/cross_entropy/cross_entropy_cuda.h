// CUDA entry points of the cross-entropy op (cross_entropy_cuda.cu), called by cross_entropy.cpp
// for CUDA logits. Targets may live on the host or the device.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

double cross_entropy_fwd_cuda(const Tensor& logits, const Tensor& targets);
Tensor cross_entropy_bwd_cuda(const Tensor& logits, const Tensor& targets);
Tensor cross_entropy_train_cuda(const Tensor& logits, const Tensor& targets, Tensor& dlogits);

}  // namespace mamba::ops
