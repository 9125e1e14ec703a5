// CUDA entry points of the elementwise ops (elementwise_cuda.cu), called by elementwise.cpp.
#pragma once
#include "core/tensor.h"

namespace mamba::ops {

void add_cuda_(Tensor& a, const Tensor& b);
Tensor swiglu_cuda(const Tensor& h, bool gate_first);
void mul_silu_cuda_(Tensor& y, const Tensor& z);
Tensor softplus_bias_clamp_cuda(const Tensor& raw, const Tensor& bias, float lo, float hi);
Tensor concat_last_cuda(const Tensor& a, const Tensor& b);
Tensor embedding_cuda(const Tensor& ids, const Tensor& table);

}  // namespace mamba::ops
